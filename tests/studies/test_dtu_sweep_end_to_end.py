"""The DTU sweep end to end through the REAL trainer (train_jdacs.py) and evaluator (jdacs.evaluate), on tiny
synthetic DTU data written by the sweep itself, with the shipped demo sweep config and CLI overrides only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from multiview.studies.dtu_sweep import parse_sweep_options, run_sweep

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "sweeps" / "dtu_fraction_demo.txt"
TINY = ["image_height=32", "image_width=32", "num_iterations=1", "w_aug=0", "num_threads=1", "device=cpu",
        "checkpoint_every=1"]


def tiny_sweep(tmp_path: Path, fractions: list[str], init_checkpoint: str, extra_overrides=(), extra=()):
    return parse_sweep_options([
        "--config", str(DEMO), "--sweeps_dir", str(tmp_path / "sweeps"), "--fractions", *fractions,
        "--init_checkpoints", init_checkpoint, "--synthetic_dtu", str(tmp_path / "data" / "dtu_sweep"),
        "--synthetic_size", "32x32", "--synthetic_views", "4", "--synthetic_test_scans", "1",
        "--overrides", f"data_root={tmp_path / 'data'}", *TINY, *extra_overrides, "--no-child_output", *extra])


def test_one_fraction_two_inits_one_iteration(tmp_path, monkeypatch):
    from jdacs.mvsnet import MVSNet

    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    checkpoint = tmp_path / "pretrained.pt"
    torch.save({"model": MVSNet().state_dict(), "step": 0}, checkpoint)
    args = tiny_sweep(tmp_path, ["5"], str(checkpoint), extra=["--synthetic_data"])
    report = run_sweep(args)
    assert report.count("ran") == 2
    folder = tmp_path / "sweeps" / "dtu_fraction_demo"
    records = json.loads((folder / "results.json").read_text())["records"]
    assert [(r["fraction"], r["init"]) for r in records] == [("5", "scratch"), ("5", "mvimgnet")]
    for record in records:
        assert record["num_images"] == 4  # 1 test scan x 4 views x lighting 3
        assert 0.0 <= record["accuracy_2mm"] <= record["accuracy_4mm"] <= record["accuracy_8mm"] <= 100.0
    scratch_run = folder / "runs" / "dtu_fraction_demo_dtu5_scratch_seed0"
    assert "dtu_fraction = 5" in (scratch_run / "config.txt").read_text()
    assert "init_from" in (folder / "runs" / "dtu_fraction_demo_dtu5_mvimgnet_seed0" / "config.txt").read_text()
    markdown = (folder / "results.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| 5 % |"))
    assert f"{records[0]['accuracy_2mm']:.2f} / {records[1]['accuracy_2mm']:.2f}" in row

    # resumable: an evaluation lost after training is redone without retraining
    (scratch_run / "eval" / "test" / "summary.json").unlink()
    report = run_sweep(args)
    assert report.count("done before") == 1 and report.steps_run == ["dtu_fraction_demo_dtu5_scratch_seed0/evaluate"]


@pytest.mark.slow
def test_demo_sweep_three_fractions_with_pretraining(tmp_path, monkeypatch):
    """The demo sweep as shipped (pretraining from a config on synthetic MVImgNet), at one iteration per run."""
    monkeypatch.chdir(ROOT)
    args = tiny_sweep(tmp_path, ["5", "15", "25"], "configs/studies/base_jdacs_pretrain_mvimgnet_demo.txt",
                      extra=["--synthetic_data", f"mvimgnet:{tmp_path / 'data' / 'sweep_mvimgnet'}:3",
                             "--pretrain_overrides", f"data_root={tmp_path / 'data'}", *TINY])
    report = run_sweep(args)
    assert report.count("ran") == 6
    records = json.loads((tmp_path / "sweeps" / "dtu_fraction_demo" / "results.json").read_text())["records"]
    assert all(r["num_images"] == 4 for r in records)
