"""CO3D depth maps: 16-bit grayscale PNGs whose raw uint16 words are IEEE float16 depth values.

The stored value is `depth / scale_adjustment` (formats.md §2.4); the true depth is the decoded value times
the frame's `depth.scale_adjustment`, which the reader puts in `View.depth_scale` (applied by `load_depth`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.io.images import read_image_raw, write_image


def read_co3d_depth(path: str | Path) -> np.ndarray:
    """(H, W) float32 decoded depth (NOT multiplied by scale_adjustment); non-finite values -> 0."""
    raw = read_image_raw(path)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataFormatError(
            path, f"CO3D depth must be a 16-bit single-channel PNG, got {raw.dtype} with shape {raw.shape}"
        )
    depth = raw.view(np.float16).astype(np.float32)
    depth[~np.isfinite(depth)] = 0.0
    return depth


def write_co3d_depth(path: str | Path, depth: np.ndarray, scale_adjustment: float = 1.0) -> None:
    """Write (H, W) depth as `(depth / scale_adjustment)` float16 bits in a 16-bit grayscale PNG.

    Non-finite depths are stored as they are (read back as 0); finite values beyond float16 raise ValueError.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"write_co3d_depth: depth must be (H, W), got shape {depth.shape}")
    if not scale_adjustment > 0:
        raise ValueError(f"write_co3d_depth: scale_adjustment must be positive, got {scale_adjustment}")
    scaled = depth.astype(np.float64) / scale_adjustment
    largest = float(np.finfo(np.float16).max)
    if (np.abs(scaled[np.isfinite(scaled)]) > largest).any():
        raise ValueError(f"write_co3d_depth: depth / scale_adjustment exceeds the float16 range ({largest}); "
                         f"use a larger scale_adjustment")
    stored = scaled.astype(np.float16)
    write_image(path, np.ascontiguousarray(stored).view(np.uint16))
