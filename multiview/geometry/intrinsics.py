"""Pinhole intrinsics that follow their image through resizing and cropping.

Pixel centres sit at integer coordinates (DESIGN.md §3), so resizing by factors (sx, sy) maps a
pixel coordinate u to (u + 0.5)·sx − 0.5. That is exactly the sampling of
`F.interpolate(..., align_corners=False)`, which `resize_image_and_K` uses, so K and image stay
consistent to a fraction of a pixel at any scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def make_K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 pinhole intrinsics."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def _check_K(K):
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")


def scale_intrinsics(K, scale_x: float, scale_y: float):
    """Intrinsics of the same image resampled by (scale_x, scale_y) = (new W / old W, new H / old H).

    Args:
        K: (..., 3, 3) numpy or torch.
    Returns:
        (..., 3, 3) with fx·sx, fy·sy, cx' = (cx + 0.5)·sx − 0.5, cy' = (cy + 0.5)·sy − 0.5.
    """
    _check_K(K)
    out = K.clone() if isinstance(K, torch.Tensor) else np.array(K, dtype=np.float64, copy=True)
    out[..., 0, 0] = K[..., 0, 0] * scale_x
    out[..., 0, 1] = K[..., 0, 1] * scale_x
    out[..., 1, 1] = K[..., 1, 1] * scale_y
    out[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    out[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return out


def resize_intrinsics(K, old_hw: tuple[int, int], new_hw: tuple[int, int]):
    """Intrinsics for an image resized from old_hw=(H, W) to new_hw=(H', W')."""
    return scale_intrinsics(K, new_hw[1] / old_hw[1], new_hw[0] / old_hw[0])


def crop_intrinsics(K, top: int, left: int):
    """Intrinsics of the crop whose top-left pixel is (row=top, col=left) of the original image."""
    _check_K(K)
    out = K.clone() if isinstance(K, torch.Tensor) else np.array(K, dtype=np.float64, copy=True)
    out[..., 0, 2] = K[..., 0, 2] - left
    out[..., 1, 2] = K[..., 1, 2] - top
    return out


def resize_image_and_K(image: torch.Tensor, K, new_hw: tuple[int, int]):
    """Resize a (..., C, H, W) image tensor bilinearly (antialiased when shrinking) and its K together.

    Returns (resized image (..., C, H', W'), K').
    """
    if image.dim() < 3:
        raise ValueError(f"image must have shape (..., C, H, W), got {tuple(image.shape)}")
    old_hw = tuple(image.shape[-2:])
    lead = image.shape[:-3]
    flat = image.reshape(-1, *image.shape[-3:])
    shrinking = new_hw[0] < old_hw[0] or new_hw[1] < old_hw[1]
    resized = F.interpolate(flat, size=new_hw, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.reshape(*lead, *resized.shape[-3:]), resize_intrinsics(K, old_hw, new_hw)


def crop_image_and_K(image: torch.Tensor, K, top: int, left: int, height: int, width: int):
    """Crop a (..., C, H, W) image to (height, width) at (top, left), and its K with it."""
    if image.dim() < 3:
        raise ValueError(f"image must have shape (..., C, H, W), got {tuple(image.shape)}")
    H, W = image.shape[-2:]
    if height <= 0 or width <= 0 or top < 0 or left < 0 or top + height > H or left + width > W:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit in a {H}x{W} image")
    return image[..., top : top + height, left : left + width], crop_intrinsics(K, top, left)
