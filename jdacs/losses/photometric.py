"""JDACS's photometric consistency loss (`UnSupLoss`, after Khot et al.'s Unsup_MVS), plus the inverse warp.

Each source image is inverse-warped to the reference with the predicted depth; per source, one scalar
`0.5·smoothL1(colours) + 0.5·smoothL1(image gradients)` over the valid-warp pixels; per pixel the k = 3
lowest-loss VALID sources are summed (robust view selection); a 3×3 SSIM term on the first two sources; an
edge-aware depth smoothness term. Deliberate differences from the original code, each documented where
it is implemented: the source is projected with its OWN intrinsics K_src (JDACS reuses K_ref — for DTU the
two are nearly equal), the warp uses `align_corners=True` pixel centres and the validity mask of
`plane_sweep_warp` (inside the image and in front of the camera; the original's floor-based mask, which
tests y0 where it means y1, is not reproduced).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jdacs.losses.smoothness import edge_aware_smoothness
from multiview.geometry.warping import plane_sweep_warp

INVALID_PENALTY = 1e4  # added to invalid views' losses before the top-k selection (JDACS)
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...]):
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")


def warp_sources_to_reference(sources: torch.Tensor, depth: torch.Tensor, K_ref: torch.Tensor, K_src: torch.Tensor,
                              src_from_ref: torch.Tensor):
    """Inverse-warp every source map onto the reference grid with a per-pixel reference depth.

    Args:
        sources: (B, S, C, Hs, Ws) source images or maps, described by K_src.
        depth: (B, h, w) reference-camera depth; K_ref (B, 3, 3) for the (h, w) grid.
        K_src: (B, S, 3, 3); src_from_ref: (B, S, 4, 4) reference camera -> source camera.
    Returns:
        warped (B, S, C, h, w); valid (B, S, h, w) bool (inside the source image and in front of it).
        Outside the image the warp repeats the border (like the original's clamped gather), so SSIM
        windows overlapping the mask edge see the same values as in JDACS.
    """
    if sources.dim() != 5 or depth.dim() != 3 or sources.shape[0] != depth.shape[0]:
        raise ValueError(f"expected sources (B, S, C, Hs, Ws) and depth (B, h, w), got {tuple(sources.shape)} and "
                         f"{tuple(depth.shape)}")
    B, S, C, Hs, Ws = sources.shape
    h, w = depth.shape[1:]
    _check_shape("K_ref", K_ref, (B, 3, 3))
    _check_shape("K_src", K_src, (B, S, 3, 3))
    _check_shape("src_from_ref", src_from_ref, (B, S, 4, 4))
    dtype = depth.dtype
    warped, valid = plane_sweep_warp(
        sources.reshape(B * S, C, Hs, Ws),
        depth[:, None].repeat_interleave(S, dim=0),
        K_ref.to(dtype).repeat_interleave(S, dim=0),
        K_src.to(dtype).reshape(B * S, 3, 3),
        src_from_ref.to(dtype).reshape(B * S, 4, 4),
        padding_mode="border",
    )
    return warped.reshape(B, S, C, h, w), valid.reshape(B, S, h, w)


def ssim_dissimilarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """clamp((1 − SSIM(x, y))/2, 0, 1) with 3×3 box windows, stride 1, NO padding (JDACS's `SSIM`).

    Args:
        x, y: (N, C, H, W). Returns (N, C, H−2, W−2). Means from AvgPool2d(3, 1); variances and the
        covariance as E[x²] − E[x]² (biased); C1 = 0.01², C2 = 0.03².
    """
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1)


def _gradients(t: torch.Tensor):
    return t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]


def _per_source_mean(loss: torch.Tensor) -> torch.Tensor:
    """(B, S, ...) elementwise loss -> (S,) mean over everything but the source axis."""
    return loss.transpose(0, 1).flatten(1).mean(dim=1)


def reconstruction_losses(warped: torch.Tensor, ref: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """JDACS `compute_reconstr_loss(simple=False)` for every source at once, one scalar per source.

    Args:
        warped: (B, S, C, h, w); ref: (B, C, h, w); valid: (B, S, h, w).
    Returns:
        (S,) 0.5·smoothL1(warped·m, ref·m) + 0.5·(smoothL1(∂x(warped·m), ∂x(ref·m)) + smoothL1(∂y…, ∂y…)),
        each smooth-L1 a mean over batch, channels and pixels (invalid pixels count as zeros).
    """
    m = valid[:, :, None].to(warped.dtype)
    warped_m, ref_m = warped * m, ref[:, None] * m
    colour = _per_source_mean(F.smooth_l1_loss(warped_m, ref_m, reduction="none"))
    gradient = sum(_per_source_mean(F.smooth_l1_loss(gw, gr, reduction="none"))
                   for gw, gr in zip(_gradients(warped_m), _gradients(ref_m)))
    return 0.5 * colour + 0.5 * gradient


def robust_view_selection(losses: torch.Tensor, valid: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Per pixel, the sum of the k smallest per-view losses among VALID views; mean over pixels.

    Args:
        losses: (S,) one loss per source view (JDACS); valid: (B, S, h, w).
    Returns:
        scalar: mean over (B, h, w) of Σ_top-k vol, entries ≥ 1e4 zeroed, vol = loss + 1e4·(1 − valid) — a pixel
        with fewer than k valid views sums only those (JDACS's `topk` of the negated volume).
    """
    S = valid.shape[1]
    if losses.shape != (S,):
        raise ValueError(f"losses must have shape ({S},) (one per source view), got {tuple(losses.shape)}")
    if S < k:
        raise ValueError(f"robust view selection needs at least k = {k} source views (V − 1 >= k), got {S}")
    volume = losses[None, :, None, None] + INVALID_PENALTY * (1 - valid.to(losses.dtype))
    smallest = torch.topk(volume, k, dim=1, largest=False).values
    return torch.where(smallest < INVALID_PENALTY, smallest, torch.zeros_like(smallest)).sum(dim=1).mean()


class PhotometricLoss(nn.Module):
    """JDACS's standard self-supervised loss: w_rec·reconstruction + w_ssim·SSIM + w_smooth·smoothness.

    Args:
        w_reconstruction, w_ssim, w_smooth: term weights (JDACS: 12, 6, 0.18; JDACS-MS uses 0.05 smoothness).
        num_best_views: k of the robust view selection (3); needs at least k source views.
        num_ssim_views: SSIM on the first this-many sources only (JDACS: 2, `if view < 3`).
        smooth_lambda: λ of the edge-aware smoothness (JDACS `--smooth_lambda` 1.0).
    """

    def __init__(self, w_reconstruction: float = 12.0, w_ssim: float = 6.0, w_smooth: float = 0.18,
                 num_best_views: int = 3, num_ssim_views: int = 2, smooth_lambda: float = 1.0):
        super().__init__()
        self.w_reconstruction, self.w_ssim, self.w_smooth = w_reconstruction, w_ssim, w_smooth
        self.num_best_views, self.num_ssim_views, self.smooth_lambda = num_best_views, num_ssim_views, smooth_lambda

    def forward(self, ref_image: torch.Tensor, src_images: torch.Tensor, depth: torch.Tensor, K_ref: torch.Tensor,
                K_src: torch.Tensor, src_from_ref: torch.Tensor):
        """
        Args:
            ref_image: (B, C, h, w) and src_images (B, V−1, C, h, w): images at the depth resolution (JDACS:
                `center_image`-standardised, bilinearly downsampled ×0.25; any normalisation is accepted).
            depth: (B, h, w) predicted reference depth (mm for DTU).
            K_ref: (B, 3, 3), K_src: (B, V−1, 3, 3) intrinsics at the depth resolution;
            src_from_ref: (B, V−1, 4, 4) reference camera -> source camera.
        Returns:
            (total, parts): total scalar; parts {"reconstruction", "ssim", "smoothness"} unweighted, detached.
        """
        if ref_image.dim() != 4 or tuple(ref_image.shape[2:]) != tuple(depth.shape[1:]):
            raise ValueError(f"ref_image must be (B, C, h, w) at the depth resolution {tuple(depth.shape[1:])}, "
                             f"got {tuple(ref_image.shape)}")
        warped, valid = warp_sources_to_reference(src_images, depth, K_ref, K_src, src_from_ref)
        reconstruction = robust_view_selection(reconstruction_losses(warped, ref_image, valid), valid,
                                               self.num_best_views)
        # JDACS sums (not averages) the per-view means over its first two sources: x = ref, y = warped source
        num_ssim = min(self.num_ssim_views, warped.shape[1])
        ssim_mask = F.avg_pool2d(valid[:, :num_ssim].to(warped.dtype), 3, 1)[:, :, None]  # (B, s, 1, h−2, w−2)
        dissimilarity = ssim_dissimilarity(ref_image[:, None].expand_as(warped[:, :num_ssim]).flatten(0, 1),
                                           warped[:, :num_ssim].flatten(0, 1)).unflatten(0, (-1, num_ssim))
        ssim = _per_source_mean(ssim_mask * dissimilarity).sum()
        smoothness = edge_aware_smoothness(depth, ref_image, self.smooth_lambda)
        total = self.w_reconstruction * reconstruction + self.w_ssim * ssim + self.w_smooth * smoothness
        parts = {"reconstruction": reconstruction, "ssim": ssim, "smoothness": smoothness}
        return total, {name: value.detach() for name, value in parts.items()}
