"""What a synthetic writer returns: the ground truth of each scene it wrote, for tests and demos."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class WrittenScene:
    """Ground truth of one written scene, views in the order the matching reader returns them.

    Attributes:
        root: the scene's directory (what the reader is pointed at, or inside the dataset root).
        name: the scene name the reader reports.
        K: (V, 3, 3) intrinsics of the written images (pixels).
        cam_from_world: (V, 4, 4) OpenCV world -> camera, in the written units (e.g. mm for DTU).
        images: V rendered (H, W, 3) float32 images in [0, 1] (before 8-bit quantisation).
        depths: V (h, w) float32 camera-z depth maps in written units, 0 = no surface.
        masks: V (h, w) bool foreground-object masks.
        files: every file written for the scene (for the demo's listing).
    """

    root: Path
    name: str
    K: np.ndarray
    cam_from_world: np.ndarray
    images: list[np.ndarray]
    depths: list[np.ndarray]
    masks: list[np.ndarray]
    files: list[Path] = field(default_factory=list)
