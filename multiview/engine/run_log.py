"""Run outputs on rank 0: TensorBoard scalars/images, a plain-text log file and the console."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np


def setup_console_and_file(run_dir: Path, is_main: bool, name: str = "mvpretrain") -> logging.Logger:
    """A logger writing to <run>/train.log and stderr on rank 0; silent (warnings only) elsewhere."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


class TensorBoard:
    """SummaryWriter on rank 0 (under <run>/tb), no-op elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}{key}", float(value), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """(H, W, 3) float image in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image(tag, np.clip(image, 0, 1), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
