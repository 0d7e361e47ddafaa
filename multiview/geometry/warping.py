"""MVSNet plane-sweep warping: source-view features seen from the reference at depth hypotheses.

For a reference pixel p and hypothesis depth d, the 3D point X = d·K_ref⁻¹[p, 1] (reference camera
frame) lands in the source view at π(K_src·(R·X + t)) with [R|t] = src_from_ref. This equals the
fronto-parallel plane-induced homography H(d) = K_src (R + t·nᵀ/d) K_ref⁻¹ with n = (0, 0, 1).
Sampling uses `grid_sample(align_corners=True)` on integer pixel centres — unlike the original
MVSNet_pytorch code, whose default align_corners=False under torch >= 1.3 shifts by half a pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from multiview.geometry.projection import inside_image, pixel_grid, pixel_to_grid, project_camera_points


def plane_sweep_pixels(depth_hypotheses: torch.Tensor, K_ref: torch.Tensor, K_src: torch.Tensor,
                       src_from_ref: torch.Tensor, eps: float = 1e-6):
    """Source-view pixel coordinates of every reference pixel at every depth hypothesis.

    Args:
        depth_hypotheses: (B, D, H, W) reference-camera depths (use `.view(B, D, 1, 1).expand`
            for per-image fronto-parallel planes, or D=1 for a per-pixel depth map).
        K_ref: (B, 3, 3) for the reference grid (H, W); K_src: (B, 3, 3) for the source image.
        src_from_ref: (B, 4, 4) reference camera -> source camera.
    Returns:
        uv_src (B, D, H, W, 2) source pixels; z_src (B, D, H, W) source-camera depth.
    """
    if depth_hypotheses.dim() != 4:
        raise ValueError(f"depth_hypotheses must be (B, D, H, W), got {tuple(depth_hypotheses.shape)}")
    B, D, H, W = depth_hypotheses.shape
    for name, t, shape in (("K_ref", K_ref, (B, 3, 3)), ("K_src", K_src, (B, 3, 3)),
                           ("src_from_ref", src_from_ref, (B, 4, 4))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    dtype, device = depth_hypotheses.dtype, depth_hypotheses.device
    uv1 = torch.cat([pixel_grid(H, W, device, dtype), torch.ones(H, W, 1, device=device, dtype=dtype)], -1)
    rays_ref = uv1.reshape(1, H * W, 3) @ torch.linalg.inv(K_ref).swapaxes(-1, -2)  # (B, HW, 3), z = 1
    R, t = src_from_ref[:, :3, :3], src_from_ref[:, :3, 3]
    rotated = rays_ref @ R.swapaxes(-1, -2)  # (B, HW, 3)
    points_src = rotated[:, None] * depth_hypotheses.reshape(B, D, H * W, 1) + t[:, None, None, :]
    uv, z = project_camera_points(points_src, K_src[:, None], eps)
    return uv.reshape(B, D, H, W, 2), z.reshape(B, D, H, W)


def plane_sweep_warp(src_features: torch.Tensor, depth_hypotheses: torch.Tensor, K_ref: torch.Tensor,
                     K_src: torch.Tensor, src_from_ref: torch.Tensor, padding_mode: str = "zeros"):
    """Warp source features onto the reference grid for each depth hypothesis.

    Args:
        src_features: (B, C, Hs, Ws) source features or image, described by K_src.
        depth_hypotheses, K_ref, K_src, src_from_ref: as in `plane_sweep_pixels`.
    Returns:
        warped (B, C, D, H, W); valid (B, D, H, W) bool — inside the source image and in front of it.
    """
    if depth_hypotheses.dim() != 4:
        raise ValueError(f"depth_hypotheses must be (B, D, H, W), got {tuple(depth_hypotheses.shape)}")
    B, D, H, W = depth_hypotheses.shape
    if src_features.dim() != 4 or src_features.shape[0] != B:
        raise ValueError(f"src_features must be (B, C, Hs, Ws) with B = {B} as in depth_hypotheses, "
                         f"got {tuple(src_features.shape)}")
    C, Hs, Ws = src_features.shape[1:]
    uv, z = plane_sweep_pixels(depth_hypotheses, K_ref, K_src, src_from_ref)
    grid = pixel_to_grid(uv, Hs, Ws).reshape(B, D * H, W, 2).to(src_features.dtype)
    warped = F.grid_sample(src_features, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    valid = inside_image(uv, Hs, Ws) & (z > 0)
    return warped.reshape(B, C, D, H, W), valid
