"""Edge-aware first-order depth smoothness (JDACS `depth_smoothness`, from Unsup_MVS)."""

from __future__ import annotations

import torch


def edge_aware_smoothness(depth: torch.Tensor, image: torch.Tensor, edge_lambda: float = 1.0) -> torch.Tensor:
    """mean|∂x D · exp(−λ·mean_c|∂x I|)| + mean|∂y D · exp(−λ·mean_c|∂y I|)| (forward differences).

    Args:
        depth: (B, h, w) depth (mm for DTU: the loss scales with the depth unit, as in JDACS).
        image: (B, C, h, w) reference image at the depth resolution (JDACS: `center_image`-standardised).
    Returns:
        scalar; the means are over the (B, h, w−1) and (B, h−1, w) difference maps.
    """
    if depth.dim() != 3 or image.dim() != 4 or image.shape[0] != depth.shape[0] or image.shape[2:] != depth.shape[1:]:
        raise ValueError(f"expected depth (B, h, w) and image (B, C, h, w), got {tuple(depth.shape)} and "
                         f"{tuple(image.shape)}")
    weight_x = torch.exp(-edge_lambda * (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1))
    weight_y = torch.exp(-edge_lambda * (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1))
    smooth_x = ((depth[..., :, 1:] - depth[..., :, :-1]) * weight_x).abs().mean()
    smooth_y = ((depth[..., 1:, :] - depth[..., :-1, :]) * weight_y).abs().mean()
    return smooth_x + smooth_y
