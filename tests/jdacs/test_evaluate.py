"""`python -m jdacs.evaluate` end to end on a 2-step run: outputs, metrics recomputed by hand from the written
PFMs and the ground truth, fused point clouds, lightings, and the errors for a missing run/config/checkpoint."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import train_jdacs
from jdacs.evaluate import main as evaluate_main
from multiview.data.readers.co3d import read_ply_points
from multiview.io.pfm import read_pfm
from tests.jdacs.conftest import HEIGHT, NUM_VIEWS, TEST_SCANS, WIDTH, tiny_run_argv

CLI = ("--device", "cpu", "--num_threads", "1", "--no-progress")


@pytest.fixture(scope="module")
def run_dir(jdacs_data_root, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("jdacs_eval_runs")
    train_jdacs.main(tiny_run_argv(jdacs_data_root, runs, "two_steps", "--num_iterations", "2", "--validate_every",
                                   "0", "--checkpoint_every", "2"))
    return runs / "two_steps"


@pytest.fixture(scope="module")
def evaluated(run_dir) -> tuple[Path, dict]:
    """Default evaluation of the test split (light 3) with fusion thresholds that keep every pixel."""
    summary = evaluate_main(["--run", str(run_dir), "--split", "test", "--prob_threshold", "0", "--num_consistent",
                             "0", *CLI])
    return run_dir / "eval" / "test", summary


def _hand_metrics(depth: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    error = np.abs(depth.astype(np.float64) - truth.astype(np.float64))[mask]
    return {"abs_error_mm": error.mean(), "accuracy_2mm": 100 * np.mean(error <= 2),
            "accuracy_4mm": 100 * np.mean(error <= 4), "accuracy_8mm": 100 * np.mean(error <= 8),
            "num_valid_pixels": int(mask.sum())}


def test_outputs_are_written_and_metrics_match_a_hand_recomputation(evaluated, jdacs_data_root):
    out, summary = evaluated
    records = json.loads((out / "per_image.json").read_text())
    assert [(r["scan"], r["ref_view"], r["light"]) for r in records] == [
        (f"scan{s}", v, 3) for s in TEST_SCANS for v in range(NUM_VIEWS)]
    with open(out / "per_image.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(records)
    depth_dir = jdacs_data_root / "dtu" / "Depths"
    for record, row in zip(records, rows):
        depth = read_pfm(out / record["depth_file"])
        confidence = read_pfm(out / record["confidence_file"])
        assert depth.shape == confidence.shape == (HEIGHT // 4, WIDTH // 4)
        assert ((confidence >= 0) & (confidence <= 1 + 1e-6)).all()
        for pfm in (record["depth_file"], record["confidence_file"]):
            png = iio.imread((out / pfm).with_suffix(".png"))
            assert png.shape == (*depth.shape, 3) and png.dtype == np.uint8
        truth = read_pfm(depth_dir / f"{record['scan']}_train" / f"depth_map_{record['ref_view']:04d}.pfm")
        mask = iio.imread(depth_dir / f"{record['scan']}_train" / f"depth_visual_{record['ref_view']:04d}.png") > 127
        expected = _hand_metrics(depth, truth, mask)
        for key, value in expected.items():
            assert record[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
            assert float(row[key]) == pytest.approx(value, rel=1e-9, abs=1e-9), key
    metrics = summary["metrics"]
    assert metrics["num_images"] == len(records)
    for key in ("abs_error_mm", "accuracy_2mm", "accuracy_4mm", "accuracy_8mm"):
        assert metrics[key] == pytest.approx(np.mean([r[key] for r in records]))
    assert json.loads((out / "summary.json").read_text())["metrics"] == pytest.approx(metrics)
    protocol = summary["protocol"]
    assert protocol["checkpoint_step"] == 2 and protocol["scans"] == TEST_SCANS and protocol["lights"] == 3
    assert (protocol["num_views"], protocol["num_depths"], protocol["depth_interval_mm"]) == (4, 16, 30.0)
    assert protocol["output_resolution_hw"] == [HEIGHT // 4, WIDTH // 4] and protocol["device"] == "cpu"
    assert protocol["coseg_backbone"] == "random"
    assert "jdacs.evaluate" in summary["command"] and summary["device"] == "cpu"  # provenance for the tables


def test_fused_point_cloud_is_readable(evaluated):
    out, summary = evaluated
    for scan in TEST_SCANS:
        entry = summary["fusion"]["scans"][f"scan{scan}"]
        assert entry["fused"]
        points = read_ply_points(out / entry["file"])
        # thresholds 0 / 0 keep every pixel of every view (the confidence of a softmax is > 0)
        assert points.shape == (NUM_VIEWS * (HEIGHT // 4) * (WIDTH // 4), 3) == (entry["num_points"], 3)
        assert np.isfinite(points).all()


def test_default_fusion_thresholds_and_all_lightings(run_dir, tmp_path):
    out = tmp_path / "all_lights"
    summary = evaluate_main(["--run", str(run_dir), "--lights", "all", "--max_samples", "9", "--out", str(out),
                             *CLI])
    records = json.loads((out / "per_image.json").read_text())
    assert [(r["ref_view"], r["light"]) for r in records] == [(0, light) for light in range(7)] + [(1, 0), (1, 1)]
    assert summary["protocol"]["lights"] == "all" and summary["protocol"]["num_samples_available"] == NUM_VIEWS * 7
    # fusion needs every view at light 3: with 9 samples the scan is reported, not silently skipped
    entry = summary["fusion"]["scans"][f"scan{TEST_SCANS[0]}"]
    assert not entry["fused"] and "not evaluated" in entry["reason"]

    full = evaluate_main(["--run", str(run_dir), "--out", str(tmp_path / "default"), *CLI])
    entry = full["fusion"]["scans"][f"scan{TEST_SCANS[0]}"]
    assert entry["fused"] and full["fusion"]["prob_threshold"] == 0.8
    assert read_ply_points(tmp_path / "default" / entry["file"]).shape == (entry["num_points"], 3)


def test_clear_errors_for_a_missing_run_config_or_checkpoint(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        evaluate_main(["--run", str(tmp_path / "nope"), *CLI])
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("eval"))
    (copy / "ckpt" / "latest.pt").unlink()
    with pytest.raises(FileNotFoundError, match="latest.pt"):
        evaluate_main(["--run", str(copy), *CLI])
    (copy / "config.txt").unlink()
    with pytest.raises(FileNotFoundError, match="config.txt"):
        evaluate_main(["--run", str(copy), *CLI])
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        evaluate_main(["--run", str(run_dir), "--checkpoint", str(tmp_path / "missing.pt"), *CLI])
