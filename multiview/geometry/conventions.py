"""Every dataset's camera convention converted to the project's, and back (for the synthetic writers).

The project's convention: `cam_from_world` (4, 4) maps world points to the OpenCV camera frame
(x right, y down, z forward); `K` (3, 3) in pixels with pixel centres at integer coordinates.
All functions take and return float64 numpy arrays; facts are from ../shared/reference/formats.md.
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.geometry.conversions import (
    axis_angle_to_rotation_matrix,
    quaternion_to_rotation_matrix,
    rotation_matrix_to_axis_angle,
    rotation_matrix_to_quaternion,
)

from multiview.geometry.intrinsics import make_K
from multiview.geometry.transforms import invert_rigid, make_rigid

# Negating camera axes y and z switches OpenCV <-> OpenGL (Blender) camera frames.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])
# PyTorch3D camera axes are (left, up, forward): negating x and y gives OpenCV's (right, down, forward).
_FLIP_XY3 = np.diag([-1.0, -1.0, 1.0])


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _with_torch(fn, array: np.ndarray) -> np.ndarray:
    """Run a kornia conversion on a float64 numpy array."""
    return fn(torch.from_numpy(_f64(array))).numpy()


# --- OpenGL / Blender camera-to-world (NeRF-synthetic `transform_matrix`) -----------------------


def opengl_c2w_to_cam_from_world(c2w_opengl) -> np.ndarray:
    """(..., 4, 4) OpenGL camera-to-world (x right, y up, z back) -> OpenCV cam_from_world."""
    return invert_rigid(_f64(c2w_opengl) @ _FLIP_YZ)


def cam_from_world_to_opengl_c2w(cam_from_world) -> np.ndarray:
    """Inverse of `opengl_c2w_to_cam_from_world`."""
    return invert_rigid(_f64(cam_from_world)) @ _FLIP_YZ


# --- LLFF poses_bounds.npy: 3x5 blocks [down, right, back | centre | hwf] ------------------------


def llff_to_cam_from_world(poses_3x5) -> tuple[np.ndarray, np.ndarray]:
    """LLFF (..., 3, 5) pose blocks -> (cam_from_world (..., 4, 4), hwf (..., 3)).

    Columns c0, c1, c2 are the camera axes (down, right, back) in world coordinates, column 3 the
    camera centre, column 4 = [H, W, focal] of the full-resolution images.
    """
    P = _f64(poses_3x5)
    if P.shape[-2:] != (3, 5):
        raise ValueError(f"LLFF poses must have shape (..., 3, 5), got {P.shape}")
    down, right, back = P[..., 0], P[..., 1], P[..., 2]
    R_world_from_cam = np.stack([right, down, -back], axis=-1)
    return invert_rigid(make_rigid(R_world_from_cam, P[..., 3])), P[..., 4].copy()


def cam_from_world_to_llff(cam_from_world, hwf) -> np.ndarray:
    """Inverse of `llff_to_cam_from_world`: (..., 4, 4) and (..., 3) -> (..., 3, 5)."""
    c2w = invert_rigid(_f64(cam_from_world))
    right, down, forward = c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2]
    hwf = np.broadcast_to(_f64(hwf), c2w.shape[:-2] + (3,))
    return np.stack([down, right, -forward, c2w[..., :3, 3], hwf], axis=-1)


# --- COLMAP: Hamilton quaternion (w, x, y, z) + translation, world -> camera ---------------------


def colmap_to_cam_from_world(qvec, tvec) -> np.ndarray:
    """COLMAP image pose (qw, qx, qy, qz), (tx, ty, tz) -> (..., 4, 4) cam_from_world.

    The quaternion is normalised first (COLMAP stores unit quaternions up to rounding).
    """
    q = _f64(qvec)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    R = _with_torch(quaternion_to_rotation_matrix, q)
    return make_rigid(R, _f64(tvec))


def cam_from_world_to_colmap(cam_from_world) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `colmap_to_cam_from_world`; the quaternion is returned with qw >= 0 (as COLMAP does)."""
    T = _f64(cam_from_world)
    q = _with_torch(rotation_matrix_to_quaternion, np.ascontiguousarray(T[..., :3, :3]))
    q = np.where(q[..., :1] < 0, -q, q)
    return q, T[..., :3, 3].copy()


# --- CO3D / PyTorch3D NDC cameras (row vectors: X_cam = X_world @ R + T) -------------------------

CO3D_INTRINSICS_FORMATS = ("ndc_norm_image_bounds", "ndc_isotropic")


def _ndc_pixel_scales(height: int, width: int, intrinsics_format: str) -> tuple[float, float]:
    """Pixels per NDC unit along x and y."""
    if intrinsics_format == "ndc_isotropic":
        s = min(height, width) / 2.0
        return s, s
    if intrinsics_format == "ndc_norm_image_bounds":
        return width / 2.0, height / 2.0
    raise ValueError(f"unknown CO3D intrinsics_format {intrinsics_format!r}; expected one of {CO3D_INTRINSICS_FORMATS}")


def co3d_to_opencv(R, T, focal_length, principal_point, height: int, width: int,
                   intrinsics_format: str = "ndc_norm_image_bounds") -> tuple[np.ndarray, np.ndarray]:
    """A CO3D `viewpoint` -> (K (3, 3), cam_from_world (4, 4)).

    Args:
        R, T: PyTorch3D row-vector extrinsics, (3, 3) and (3,).
        focal_length, principal_point: NDC (fx, fy) and (px, py); NDC x points left, y up.
        height, width: image size the viewpoint belongs to (`image.size` = [H, W]).
        intrinsics_format: the frame's `intrinsics_format` (absent in CO3D v1: the legacy default).
    """
    sx, sy = _ndc_pixel_scales(height, width, intrinsics_format)
    fx, fy = _f64(focal_length)
    px, py = _f64(principal_point)
    K = make_K(fx * sx, fy * sy, width / 2.0 - px * sx, height / 2.0 - py * sy)
    R_cv = _FLIP_XY3 @ _f64(R).T
    return K, make_rigid(R_cv, _FLIP_XY3 @ _f64(T))


def opencv_to_co3d(K, cam_from_world, height: int, width: int, intrinsics_format: str = "ndc_isotropic"):
    """Inverse of `co3d_to_opencv`: returns (R, T, focal_length, principal_point) as numpy arrays."""
    sx, sy = _ndc_pixel_scales(height, width, intrinsics_format)
    K, T_cv = _f64(K), _f64(cam_from_world)
    focal = np.array([K[0, 0] / sx, K[1, 1] / sy])
    principal = np.array([-(K[0, 2] - width / 2.0) / sx, -(K[1, 2] - height / 2.0) / sy])
    R = (_FLIP_XY3 @ T_cv[:3, :3]).T
    return R, _FLIP_XY3 @ T_cv[:3, 3], focal, principal


# --- RealEstate10K: intrinsics normalised by image size, 3x4 world -> camera (OpenCV) ------------


def realestate_to_opencv(intrinsics_normalized, w2c_3x4, height: int, width: int):
    """RE10K (fx, fy, cx, cy) normalised by (W, H, W, H) and a 3x4 world->camera -> (K, cam_from_world)."""
    fx, fy, cx, cy = _f64(intrinsics_normalized)
    P = _f64(w2c_3x4).reshape(3, 4)
    return make_K(fx * width, fy * height, cx * width, cy * height), make_rigid(P[:, :3], P[:, 3])


def opencv_to_realestate(K, cam_from_world, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `realestate_to_opencv`: returns ((fx, fy, cx, cy) normalised, (3, 4) world->camera)."""
    K = _f64(K)
    normalized = np.array([K[0, 0] / width, K[1, 1] / height, K[0, 2] / width, K[1, 2] / height])
    return normalized, _f64(cam_from_world)[:3, :4].copy()


# --- Spaces: axis-angle orientation, position in metres ------------------------------------------


def spaces_to_opencv(camera: dict) -> tuple[np.ndarray, np.ndarray]:
    """One camera dict of a Spaces `models.json` -> (K, cam_from_world).

    As IBRNet reads it: world_from_cam rotation = rotation(axis, −angle) where `orientation` is an
    axis-angle vector (its length is the angle), translation = `position`; fx = focal_length,
    fy = focal_length·pixel_aspect_ratio, (cx, cy) = principal_point.
    """
    orientation = _f64(camera["orientation"])
    R_world_from_cam = _with_torch(axis_angle_to_rotation_matrix, -orientation[None])[0]
    world_from_cam = make_rigid(R_world_from_cam, _f64(camera["position"]))
    f = float(camera["focal_length"])
    cx, cy = _f64(camera["principal_point"])
    K = make_K(f, f * float(camera.get("pixel_aspect_ratio", 1.0)), cx, cy)
    return K, invert_rigid(world_from_cam)


def opencv_to_spaces(K, cam_from_world) -> dict:
    """Inverse of `spaces_to_opencv` (the pose and intrinsics fields of a Spaces camera dict)."""
    K = _f64(K)
    world_from_cam = invert_rigid(_f64(cam_from_world))
    axis_angle = _with_torch(rotation_matrix_to_axis_angle, world_from_cam[None, :3, :3])[0]
    return {
        "focal_length": float(K[0, 0]),
        "pixel_aspect_ratio": float(K[1, 1] / K[0, 0]),
        "principal_point": [float(K[0, 2]), float(K[1, 2])],
        "position": world_from_cam[:3, 3].tolist(),
        "orientation": (-axis_angle).tolist(),
    }
