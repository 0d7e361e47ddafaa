"""Rigid transforms named by direction: `cam_from_world` maps world points to camera points.

Every function accepts numpy arrays or torch tensors of shape (..., 4, 4) and returns the same type.
"""

from __future__ import annotations

import numpy as np
import torch


def _check_4x4(T, name: str):
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must have shape (..., 4, 4), got {tuple(T.shape)}")


def invert_rigid(T):
    """Inverse of rigid transforms [R|t; 0 0 0 1] using R^T (exact, no general matrix inverse).

    Args:
        T: (..., 4, 4) rigid transforms, numpy or torch.
    Returns:
        (..., 4, 4) inverses, same type/dtype/device.
    """
    _check_4x4(T, "T")
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    R_inv = R.swapaxes(-1, -2)
    out = T.clone() if isinstance(T, torch.Tensor) else np.array(T, copy=True)
    out[..., :3, :3] = R_inv
    out[..., :3, 3:] = -(R_inv @ t)
    out[..., 3, :3] = 0
    out[..., 3, 3] = 1
    return out


def world_from_cam(cam_from_world):
    """Camera pose (camera -> world) from a world -> camera transform. Shapes (..., 4, 4)."""
    return invert_rigid(cam_from_world)


def cam_from_world(world_from_cam):
    """World -> camera transform from a camera pose (camera -> world). Shapes (..., 4, 4)."""
    return invert_rigid(world_from_cam)


def make_rigid(R, t):
    """Assemble (..., 4, 4) transforms from rotations (..., 3, 3) and translations (..., 3)."""
    if R.shape[-2:] != (3, 3) or t.shape[-1] != 3:
        raise ValueError(f"expected R (..., 3, 3) and t (..., 3), got {tuple(R.shape)} and {tuple(t.shape)}")
    if isinstance(R, torch.Tensor):
        out = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    else:
        out = np.zeros((*R.shape[:-2], 4, 4), dtype=np.result_type(R, t, np.float64))
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out


def relative_transform(target_from_world, source_from_world):
    """Transform mapping points of the source camera frame into the target camera frame.

    Returns target_from_world @ inv(source_from_world), shapes (..., 4, 4).
    """
    _check_4x4(target_from_world, "target_from_world")
    return target_from_world @ invert_rigid(source_from_world)


def transform_points(T, points):
    """Apply (..., 4, 4) transforms to (..., N, 3) points; returns (..., N, 3)."""
    _check_4x4(T, "T")
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., N, 3), got {tuple(points.shape)}")
    return points @ T[..., :3, :3].swapaxes(-1, -2) + T[..., None, :3, 3]


def is_rigid(T, atol: float = 1e-6) -> bool:
    """True when every (..., 4, 4) transform has an orthonormal, right-handed rotation and last row 0 0 0 1."""
    T = torch.as_tensor(T, dtype=torch.float64)
    R = T[..., :3, :3]
    eye = torch.eye(3, dtype=T.dtype).expand_as(R)
    last = torch.tensor([0, 0, 0, 1], dtype=T.dtype).expand_as(T[..., 3, :])
    return bool(
        torch.isfinite(T).all()
        and torch.allclose(R @ R.transpose(-1, -2), eye, atol=atol)
        and torch.allclose(torch.linalg.det(R), torch.ones_like(R[..., 0, 0]), atol=atol)
        and torch.allclose(T[..., 3, :], last, atol=atol)
    )
