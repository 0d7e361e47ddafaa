"""eval/eval_ibrnet.py end to end on tiny synthetic NeRF-synthetic, DeepVoxels and CO3D roots with a random run."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ibrnet.options import build_ibrnet_parser
from ibrnet.train import build_model
from multiview.engine.options import parse_options, write_resolved_config
from multiview.synthetic.writers import co3d as co3d_writer
from multiview.synthetic.writers import deepvoxels as deepvoxels_writer
from multiview.synthetic.writers import nerf_synthetic as nerf_synthetic_writer

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "eval" / "eval_ibrnet.py"
SIZE = 32  # the smallest size the IBRNet feature net, SSIM (11) and LPIPS-VGG (16) all accept


def _load_script():
    spec = importlib.util.spec_from_file_location("eval_ibrnet_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


eval_ibrnet = _load_script()


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    """The summary's commit hash comes from `git rev-parse HEAD`; tests do not run git."""
    monkeypatch.setattr(eval_ibrnet, "commit_hash", lambda: "test-commit")


@pytest.fixture(scope="session")
def eval_root(tmp_path_factory) -> Path:
    """<root>/{nerf_synthetic, deepvoxels}: one 12-view 32x32 scene each (1 test target each), and a random run."""
    root = tmp_path_factory.mktemp("eval_ibrnet")
    data = root / "data"
    nerf_synthetic_writer.write(data / "nerf_synthetic", 1, 12, SIZE, SIZE, 0)
    deepvoxels_writer.write(data / "deepvoxels", 1, 12, SIZE, SIZE, 0)
    parser = build_ibrnet_parser()
    args = parse_options(parser, ["--data_root", str(data), "--device", "cpu", "--num_threads", "1",
                                  "--num_coarse_samples", "8", "--num_fine_samples", "8", "--chunk_size", "512"])
    run = root / "run"
    write_resolved_config(parser, args, run)
    torch.manual_seed(0)
    (run / "ckpt").mkdir(parents=True)
    torch.save({"model": build_model(args).state_dict(), "step": 0}, run / "ckpt" / "latest.pt")
    return root


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_end_to_end_writes_every_output_and_means_of_per_image_values(eval_root, tmp_path):
    out = tmp_path / "eval"
    argv = ["--run", str(eval_root / "run"), "--datasets", "nerf_synthetic", "deepvoxels", "--lpips_random_backbone",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    assert eval_ibrnet.main(argv) == 0

    for name in ("per_image.json", "per_image.csv", "per_scene.csv", "per_dataset.csv", "summary.json", "table.md"):
        assert (out / name).is_file(), name
    records = json.loads((out / "per_image.json").read_text())
    rows = _read_csv(out / "per_image.csv")
    assert [r["dataset"] for r in rows] == ["nerf_synthetic", "deepvoxels"]  # one testskip target per scene
    assert list(rows[0]) == ["dataset", "scene", "view", "view_name", "psnr", "ssim", "lpips"]
    assert [r["view_name"] for r in records] == ["test/r_0", "test/000000"]
    for record in records:
        assert len(record["sources"]) == 8 and record["view"] not in record["sources"]  # the 8 train views
        assert (record["height"], record["width"]) == (SIZE, SIZE)  # full resolution
        name = f"{record['view']:04d}_{record['view_name'].replace('/', '_')}"
        stem = out / "images" / record["dataset"] / record["scene"] / name
        for kind in ("fine", "coarse", "error", "depth", "depth16"):
            assert Path(f"{stem}_{kind}.png").is_file(), (stem, kind)

    per_dataset = {row["dataset"]: row for row in _read_csv(out / "per_dataset.csv")}
    summary = json.loads((out / "summary.json").read_text())
    for dataset in ("nerf_synthetic", "deepvoxels"):
        mine = [r for r in rows if r["dataset"] == dataset]
        from_summary = next(d for d in summary["per_dataset"] if d["dataset"] == dataset)
        for metric in ("psnr", "ssim", "lpips"):
            expected = np.mean([float(r[metric]) for r in mine])
            assert float(per_dataset[dataset][metric]) == pytest.approx(expected, rel=1e-12)
            assert from_summary[metric] == pytest.approx(expected, rel=1e-12)
        assert 0.0 < float(per_dataset[dataset]["ssim"]) < 1.0 and float(per_dataset[dataset]["psnr"]) > 0.0

    assert summary["step"] == 0 and summary["commit"] == "test-commit" and summary["device"] == "cpu"
    protocol = summary["protocol"]
    assert protocol["resolution"].startswith("full") and protocol["prediction"] == "clipped to [0, 1]"
    assert protocol["sampling"].startswith("deterministic") and protocol["evaluated_output"] == "fine"
    assert protocol["metrics"]["lpips"]["weights"] == "random" and "NOT comparable" in str(protocol["metrics"]["lpips"])
    assert protocol["datasets"]["nerf_synthetic"]["view_backgrounds"] == ["white"]
    assert "[::10]" in protocol["datasets"]["deepvoxels"]["targets"]
    assert protocol["datasets"]["deepvoxels"]["selection_rule"] == "vector"
    table = (out / "table.md").read_text()
    assert "Blender PSNR↑" in table and "DeepVoxels LPIPS↓" in table and "| run |" in table


def test_without_lpips_the_results_say_it_was_not_computed(eval_root, tmp_path):
    out = tmp_path / "eval"
    argv = ["--run", str(eval_root / "run"), "--datasets", "blender", "--no_lpips", "--device", "cpu",
            "--no-progress", "--no-save_images", "--max_views_per_scene", "1", "--out", str(out)]
    assert eval_ibrnet.main(argv) == 0
    rows = _read_csv(out / "per_image.csv")
    assert len(rows) == 1 and rows[0]["dataset"] == "nerf_synthetic" and rows[0]["lpips"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lpips"].startswith("not computed")
    assert summary["protocol"]["metrics"]["lpips"]["computed"] is False
    assert summary["per_dataset"][0]["lpips"] is None
    assert summary["protocol"]["datasets"]["nerf_synthetic"]["requested_as"] == "blender"
    assert not (out / "images").exists()


def test_missing_lpips_weights_stop_before_rendering_with_one_message(eval_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as exit_info:
        eval_ibrnet.main(["--run", str(eval_root / "run"), "--datasets", "deepvoxels", "--device", "cpu",
                          "--out", str(out)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "vgg16-397923af.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "--no_lpips" in message
    assert not out.exists()


def test_make_co3d_list_then_evaluate_co3d_with_it(tmp_path, eval_root):
    co3d_root = tmp_path / "data" / "co3d"
    co3d_writer.write(co3d_root, 3, 10, SIZE, SIZE, 5, version="v2")
    list_file = tmp_path / "co3d_scenes.txt"
    assert eval_ibrnet.main(["--make_co3d_list", str(co3d_root), "--num_sequences", "2",
                             "--list_out", str(list_file)]) == 0
    text = list_file.read_text()
    assert "UNKNOWN" in text and "--make_co3d_list" in text and "viewpoint_quality_score" in text
    scenes = eval_ibrnet.read_scene_list(list_file)
    categories = eval_ibrnet.co3d_categories(co3d_root)
    assert len(scenes) == 2 and all(s.split("/")[0] in categories for s in scenes)

    out = tmp_path / "eval"
    argv = ["--run", str(eval_root / "run"), "--data_root", str(tmp_path / "data"), "--datasets", "co3d",
            "--co3d_scene_list", str(list_file), "--no_lpips", "--device", "cpu", "--no-progress",
            "--no-save_images", "--max_views_per_scene", "1", "--out", str(out)]
    assert eval_ibrnet.main(argv) == 0
    rows = _read_csv(out / "per_image.csv")
    assert sorted(r["scene"] for r in rows) == sorted(scenes)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["datasets"]["co3d"]["scene_list"] == str(list_file)
    assert summary["protocol"]["max_views_per_scene"] == 1


def test_a_co3d_list_that_does_not_fit_the_root_says_how_to_make_one(tmp_path, eval_root, capsys):
    co3d_root = tmp_path / "data" / "co3d"
    co3d_writer.write(co3d_root, 1, 10, SIZE, SIZE, 7, version="v2")
    list_file = tmp_path / "other.txt"
    list_file.write_text("# a list for another root\nsome_category/123_456_789\n")
    with pytest.raises(SystemExit):
        eval_ibrnet.main(["--run", str(eval_root / "run"), "--data_root", str(tmp_path / "data"), "--datasets",
                          "co3d", "--co3d_scene_list", str(list_file), "--no_lpips", "--device", "cpu"])
    assert "--make_co3d_list" in capsys.readouterr().err


def test_shipped_co3d_scene_list_documents_its_rule():
    path = eval_ibrnet.DEFAULT_CO3D_SCENE_LIST
    assert path == REPO / "configs" / "eval" / "co3d_scenes.txt"
    scenes = eval_ibrnet.read_scene_list(path)
    assert scenes and all(len(s.split("/")) == 2 for s in scenes)
    header = path.read_text()
    for phrase in ("UNKNOWN", "select_co3d_eval_sequences", "viewpoint_quality_score", "--make_co3d_list",
                   "--num_sequences 88", "SYNTHETIC"):
        assert phrase in header, phrase


def test_scene_filters_and_dataset_folders():
    assert eval_ibrnet.parse_scene_filters(["lego"], ["nerf_synthetic"]) == {"nerf_synthetic": ["lego"]}
    assert eval_ibrnet.parse_scene_filters(["blender:lego", "co3d:car/1_2_3"], ["nerf_synthetic", "co3d"]) == {
        "nerf_synthetic": ["lego"], "co3d": ["car/1_2_3"]}
    with pytest.raises(ValueError, match="DATASET:SCENE"):
        eval_ibrnet.parse_scene_filters(["lego"], ["nerf_synthetic", "deepvoxels"])
    with pytest.raises(ValueError, match="not in --datasets"):
        eval_ibrnet.parse_scene_filters(["llff:fern"], ["nerf_synthetic"])
    assert eval_ibrnet.parse_dataset_folders(["blender=my_blender"]) == {"nerf_synthetic": "my_blender"}
    with pytest.raises(ValueError, match="NAME=FOLDER"):
        eval_ibrnet.parse_dataset_folders(["blender"])


def test_unknown_scene_is_a_clear_error(eval_root, capsys):
    with pytest.raises(SystemExit):
        eval_ibrnet.main(["--run", str(eval_root / "run"), "--datasets", "deepvoxels", "--scenes", "vase",
                          "--no_lpips", "--device", "cpu"])
    assert "vase" in capsys.readouterr().err


def test_runs_as_a_script_from_the_repository_root():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "eval/eval_ibrnet.py", "--help"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--co3d_scene_list" in result.stdout and "--no_lpips" in result.stdout
