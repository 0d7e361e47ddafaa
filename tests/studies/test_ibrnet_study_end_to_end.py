"""The shipped IBRNet where-to-pretrain demo study end to end through the REAL trainer (train_ibrnet.py) and
evaluator (eval/eval_ibrnet.py), at one iteration and 32x32 images, with CLI overrides only: synthetic data in
every layout it names (test scenes from their own seeds), pretraining, finetuning on the mix (Spaces' cameras of
two image sizes included), evaluation on the four test layouts, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from multiview.data.loading import load_image
from multiview.data.registry import list_scene_handles
from multiview.studies.pretrain_study import parse_study_options, run_study

ROOT = Path(__file__).resolve().parents[2]
TINY = ["num_iterations=1", "checkpoint_every=1", "num_rays=16", "num_coarse_samples=8", "num_fine_samples=8",
        "max_image_side=32", "num_threads=1", "device=cpu"]


def test_ibrnet_where_demo_study_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's data folders (demo_data/...) are relative to the working directory
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    args = parse_study_options([
        "--config", "configs/studies/ibrnet_where_demo.txt", "--sources", "mvimgnet", "--no-include_scratch",
        "--synthetic_size", "32x32", "--synthetic_views", "12",
        "--pretrain_overrides", "data_root=demo_data", *TINY, "--finetune_overrides", *TINY, "--no-child_output"])
    run_study(args)

    folder = tmp_path / "studies" / "ibrnet_where_demo"
    records = json.loads((folder / "runs" / "ibrnet_where_demo_finetune_mvimgnet_seed0" / "eval" /
                          "per_image.json").read_text())
    assert {r["dataset"] for r in records} == {"deepvoxels", "nerf_synthetic", "co3d", "llff_test"}
    assert all(np.isfinite(r["psnr"]) and 0.0 < r["ssim"] <= 1.0 for r in records)
    row = next(line for line in (folder / "results.md").read_text().splitlines() if line.startswith("| MVImgNet"))
    assert row.count("–") == 4  # only the four LPIPS cells are empty (--no_lpips)

    # the CO3D test scenes come from their own seed: none of them is a CO3D pretraining-source scene
    test_scene = list_scene_handles("co3d", Path("demo_data/study_ibrnet/test/co3d"), "all")[0].load()
    for handle in list_scene_handles("co3d", Path("demo_data/study_ibrnet/co3d"), "all"):
        assert not np.array_equal(load_image(handle.load().views[0]), load_image(test_scene.views[0]))
