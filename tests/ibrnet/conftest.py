"""IBRNet test fixtures: a tiny synthetic MVImgNet data root (written once per session) and run options."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiview.synthetic.writers import mvimgnet as mvimgnet_writer

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs" / "ibrnet"

TRAIN_SCENES, VAL_SCENES, NUM_VIEWS, HEIGHT, WIDTH = 3, 1, 12, 48, 64


@pytest.fixture(scope="session")
def ibrnet_data_root(tmp_path_factory) -> Path:
    """<root>/mvimgnet (3 scenes) and <root>/mvimgnet_unseen (1 other scene), 12 views of 48x64 each.

    The layout `make demo` writes for configs/ibrnet/demo.txt, at a much smaller size.
    """
    root = tmp_path_factory.mktemp("ibrnet_data")
    mvimgnet_writer.write(root / "mvimgnet", TRAIN_SCENES, NUM_VIEWS, HEIGHT, WIDTH, seed=0)
    mvimgnet_writer.write(root / "mvimgnet_unseen", VAL_SCENES, NUM_VIEWS, HEIGHT, WIDTH, seed=100)
    return root


def tiny_run_argv(data_root: Path, runs_dir: Path, expname: str, *extra: str) -> list[str]:
    """CLI arguments of a tiny CPU run on `ibrnet_data_root` (overriding configs/ibrnet/demo.txt)."""
    return ["--config", str(CONFIG_DIR / "demo.txt"), "--data_root", str(data_root), "--runs_dir", str(runs_dir),
            "--expname", expname, "--device", "cpu", "--num_threads", "1", "--no-progress",
            "--max_image_side", "40", "--num_rays", "32", "--num_source_views", "4", "--source_count_jitter", "1",
            "--num_coarse_samples", "8", "--num_fine_samples", "8", "--log_every", "1",
            "--num_val_views", "1", "--render_stride", "4", "--chunk_size", "512", *extra]
