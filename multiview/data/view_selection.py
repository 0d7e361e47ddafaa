"""Nearest source views for a target camera (IBRNet's `get_nearest_pose_ids`, vectorised).

Methods:
    "vector": angle between the rays from the scene centre to the two camera centres (object-centric
              scenes: Blender, DeepVoxels, Google Scanned Objects, CO3D, MVImgNet).
    "dist":   Euclidean distance between camera centres (forward-facing: LLFF, ibrnet_collected).
    "matrix": geodesic angle between the camera rotations.
"""

from __future__ import annotations

import numpy as np

from multiview.geometry.transforms import invert_rigid

SELECTION_METHODS = ("vector", "dist", "matrix")


def view_distances(target_cam_from_world: np.ndarray, cams_from_world: np.ndarray, method: str,
                   scene_center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(V,) distance of each of (V, 4, 4) cameras to the (4, 4) target under `method`."""
    target = invert_rigid(np.asarray(target_cam_from_world, dtype=np.float64))
    poses = invert_rigid(np.asarray(cams_from_world, dtype=np.float64))
    if method == "vector":
        center = np.asarray(scene_center, dtype=np.float64)
        a = target[:3, 3] - center
        b = poses[:, :3, 3] - center
        cos = (b @ a) / (np.linalg.norm(b, axis=-1) * np.linalg.norm(a) + 1e-12)
        return np.arccos(np.clip(cos, -1.0, 1.0))
    if method == "dist":
        return np.linalg.norm(poses[:, :3, 3] - target[:3, 3], axis=-1)
    if method == "matrix":
        relative = poses[:, :3, :3].transpose(0, 2, 1) @ target[:3, :3]
        cos = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
        return np.arccos(np.clip(cos, -1.0, 1.0))
    raise ValueError(f"unknown view selection method {method!r}; expected one of {SELECTION_METHODS}")


def nearest_views(target_cam_from_world: np.ndarray, cams_from_world: np.ndarray, num_select: int,
                  method: str, exclude: int | None = None, scene_center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Indices of the `num_select` cameras nearest to the target, nearest first.

    Args:
        exclude: index into `cams_from_world` never selected (the target itself when it is in the pool).
        num_select: capped at the number of selectable cameras.
    """
    distances = view_distances(target_cam_from_world, cams_from_world, method, scene_center)
    if exclude is not None:
        distances[exclude] = np.inf
    available = len(distances) - (exclude is not None)
    order = np.argsort(distances, kind="stable")
    return order[: max(0, min(num_select, available))]
