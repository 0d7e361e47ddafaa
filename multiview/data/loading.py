"""Pixels of a `View`: its image, mask and depth, decoded according to the record's fields."""

from __future__ import annotations

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.records import View
from multiview.io.images import read_image, read_mask


def load_image(view: View) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; RGBA files composited on `view.background`; size checked against the record."""
    image = read_image(view.image_path, background=view.background)
    if image.shape[:2] != (view.height, view.width):
        raise DataFormatError(
            view.image_path, f"image is {image.shape[0]}x{image.shape[1]}, the cameras say {view.height}x{view.width}"
        )
    return image


def load_mask(view: View) -> np.ndarray:
    """(h, w) float32 foreground probability in [0, 1]; raises when the view has no mask."""
    if view.mask_path is None:
        raise ValueError(f"view {view.name} ({view.image_path}) has no mask")
    return read_mask(view.mask_path)


def load_depth(view: View) -> np.ndarray:
    """(h, w) float32 camera-z depth in dataset units, 0 where invalid; raises when the view has no depth."""
    if view.depth_path is None:
        raise ValueError(f"view {view.name} ({view.image_path}) has no depth map")
    if view.depth_format == "pfm":
        from multiview.io.pfm import read_pfm

        depth = read_pfm(view.depth_path)
        if depth.ndim == 3:
            depth = depth[..., 0]
    elif view.depth_format == "co3d_png":
        from multiview.io.co3d_depth import read_co3d_depth

        depth = read_co3d_depth(view.depth_path)
    else:
        depth = np.load(view.depth_path)
    depth = np.asarray(depth, dtype=np.float32) * np.float32(view.depth_scale)
    depth[~np.isfinite(depth)] = 0.0
    return depth
