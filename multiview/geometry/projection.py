"""Projection, unprojection, rays and `grid_sample` coordinates (torch, differentiable, any device).

Pixel (u, v) = (column, row) with pixel centres at integer coordinates. `grid_sample` is always
called with align_corners=True, where normalised x = 2u/(W−1) − 1 puts u = 0 and u = W−1 exactly
on the first and last pixel centres. Rays and projection share `K` and this convention, so
project(unproject(uv, z)) == uv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from multiview.geometry.transforms import transform_points


def _check_K(K: torch.Tensor):
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")


def project(points_world: torch.Tensor, K: torch.Tensor, cam_from_world: torch.Tensor, eps: float = 1e-8):
    """Project world points into a camera.

    Args:
        points_world: (..., N, 3) world points.
        K: (..., 3, 3) intrinsics; cam_from_world: (..., 4, 4).
        eps: smallest |z| used in the division (points at z=0 stay finite).
    Returns:
        uv: (..., N, 2) pixel coordinates; depth: (..., N) camera z (negative = behind the camera).
    """
    _check_K(K)
    points_cam = transform_points(cam_from_world, points_world)
    return project_camera_points(points_cam, K, eps)


def project_camera_points(points_cam: torch.Tensor, K: torch.Tensor, eps: float = 1e-8):
    """Project (..., N, 3) camera-frame points with (..., 3, 3) K -> uv (..., N, 2), depth (..., N)."""
    _check_K(K)
    z = points_cam[..., 2]
    safe_z = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
    pixels_h = points_cam @ K.swapaxes(-1, -2)
    return pixels_h[..., :2] / safe_z[..., None], z


def unproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, world_from_cam: torch.Tensor):
    """Lift pixels with their depth (camera z) to world points.

    Args:
        uv: (..., N, 2) pixel coordinates; depth: (..., N) camera z.
        K: (..., 3, 3); world_from_cam: (..., 4, 4).
    Returns:
        (..., N, 3) world points.
    """
    return transform_points(world_from_cam, pixels_to_camera_points(uv, depth, K))


def pixels_to_camera_points(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor):
    """(..., N, 2) pixels and (..., N) depths -> (..., N, 3) camera-frame points z·K⁻¹[u, v, 1]."""
    _check_K(K)
    if uv.shape[-1] != 2 or uv.shape[:-1] != depth.shape:
        raise ValueError(f"expected uv (..., N, 2) and depth (..., N), got {tuple(uv.shape)} and {tuple(depth.shape)}")
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy, skew = K[..., 0, 2, None], K[..., 1, 2, None], K[..., 0, 1, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    return torch.stack([x * depth, y * depth, depth], dim=-1)


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) integer pixel-centre coordinates (u, v) = (column, row)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def pixel_to_grid(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates (..., 2) -> `grid_sample` coordinates in [−1, 1] for align_corners=True."""
    scale = uv.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    return uv * scale - 1.0


def grid_to_pixel(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `pixel_to_grid`."""
    scale = grid.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return (grid + 1.0) * scale


def sample_at_pixels(image: torch.Tensor, uv: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Bilinearly sample images at pixel coordinates.

    Args:
        image: (B, C, H, W); uv: (B, ..., 2) pixel coordinates.
    Returns:
        (B, C, ...) sampled values (outside the image: `padding_mode` of grid_sample).
    """
    if image.dim() != 4:
        raise ValueError(f"image must have shape (B, C, H, W), got {tuple(image.shape)}")
    B, C, H, W = image.shape
    if uv.shape[0] != B or uv.shape[-1] != 2:
        raise ValueError(f"uv must have shape ({B}, ..., 2), got {tuple(uv.shape)}")
    grid = pixel_to_grid(uv, H, W).reshape(B, 1, -1, 2).to(image.dtype)
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    return sampled.reshape(B, C, *uv.shape[1:-1])


def inside_image(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2) pixel coordinates -> (...) bool, True within the pixel-centre hull [0, W−1]×[0, H−1]."""
    u, v = uv[..., 0], uv[..., 1]
    return (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)


def rays_through_pixels(uv: torch.Tensor, K: torch.Tensor, world_from_cam: torch.Tensor):
    """World-space rays through pixel centres.

    Args:
        uv: (..., N, 2) pixels; K: (..., 3, 3); world_from_cam: (..., 4, 4).
    Returns:
        origins (..., N, 3) camera centres; directions (..., N, 3) NOT normalised: their camera-frame
        z component is 1, so the point origin + t·direction has depth (camera z) t — the IBRNet convention.
    """
    ones = torch.ones_like(uv[..., 0])
    dirs_cam = pixels_to_camera_points(uv, ones, K)
    R = world_from_cam[..., :3, :3]
    directions = dirs_cam @ R.swapaxes(-1, -2)
    origins = world_from_cam[..., None, :3, 3].expand_as(directions)
    return origins, directions


def backproject_depth(depth: torch.Tensor, K: torch.Tensor, world_from_cam: torch.Tensor) -> torch.Tensor:
    """Depth maps to world points.

    Args:
        depth: (B, H, W) camera z; K: (B, 3, 3) for that resolution; world_from_cam: (B, 4, 4).
    Returns:
        (B, H, W, 3) world points (also for invalid depth 0: those land on the camera centre).
    """
    if depth.dim() != 3:
        raise ValueError(f"depth must have shape (B, H, W), got {tuple(depth.shape)}")
    B, H, W = depth.shape
    uv = pixel_grid(H, W, device=depth.device, dtype=depth.dtype).reshape(1, H * W, 2).expand(B, -1, -1)
    return unproject(uv, depth.reshape(B, H * W), K, world_from_cam).reshape(B, H, W, 3)
