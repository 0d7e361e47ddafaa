"""JDACS training/evaluation fixtures: a tiny synthetic DTU training-layout root (written once per session).

The layout `make demo` writes for configs/jdacs/demo.txt, much smaller: 5 views of 64x96 (depth maps 16x24),
7 lightings, the scans of the shipped 5 % fraction list (so `--dtu_fraction 5` finds its scans) and the official
test-list scan 1 (what validation and `jdacs.evaluate --split test` use).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jdacs.fractions import fraction_list_path, read_scan_list_file
from multiview.synthetic.writers import dtu as dtu_writer

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs" / "jdacs"

NUM_VIEWS, HEIGHT, WIDTH = 5, 64, 96
TRAIN_SCANS = read_scan_list_file(fraction_list_path(5))  # 57 88 94 126
TEST_SCANS = [1]


@pytest.fixture(scope="session")
def jdacs_data_root(tmp_path_factory) -> Path:
    """<root>/dtu: synthetic DTU training layout with TRAIN_SCANS + TEST_SCANS (module docstring)."""
    root = tmp_path_factory.mktemp("jdacs_data")
    scans = TRAIN_SCANS + TEST_SCANS
    dtu_writer.write(root / "dtu", len(scans), NUM_VIEWS, HEIGHT, WIDTH, seed=0, layout="train", scans=scans)
    return root


def tiny_run_argv(data_root: Path, runs_dir: Path, expname: str, *extra: str) -> list[str]:
    """CLI arguments of a tiny CPU run on `jdacs_data_root`, overriding configs/jdacs/demo.txt.

    4 views, D 16 over 425..905 mm (interval 2.5 x 12 = 30 mm), batch 1, co-segmentation on 64x64 VGG inputs.
    """
    return ["--config", str(CONFIG_DIR / "demo.txt"), "--data_root", str(data_root), "--runs_dir", str(runs_dir),
            "--expname", expname, "--device", "cpu", "--num_threads", "1", "--no-progress",
            "--dtu_scans", *map(str, TRAIN_SCANS[:2]), "--num_views", "4", "--num_depths", "16",
            "--interval_scale", "12", "--batch_size", "1", "--coseg_image_size", "64", "--log_every", "1",
            "--num_val_samples", "2", *extra]
