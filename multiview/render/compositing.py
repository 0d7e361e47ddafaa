"""Alpha compositing of per-sample colours and densities into pixels (IBRNet's `raw2outputs`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# IBRNet's ray validity rule: a ray counts (loss mask, rendering) when more than this many samples are valid.
MIN_VALID_SAMPLES_PER_RAY = 8


@dataclass
class Composited:
    """Per-ray outputs: rgb (R, 3), depth (R,), weights (R, S), opacity (R,), valid (R,) bool."""

    rgb: torch.Tensor
    depth: torch.Tensor
    weights: torch.Tensor
    opacity: torch.Tensor
    valid: torch.Tensor


def alpha_from_density(sigma: torch.Tensor, deltas: torch.Tensor | None = None) -> torch.Tensor:
    """alpha = 1 − exp(−σ·δ).

    With `deltas=None` the interval length is omitted (δ = 1): IBRNet's deliberate choice, because
    COLMAP scenes come at very different scales; the network absorbs the scale into σ.
    """
    return 1.0 - torch.exp(-(sigma if deltas is None else sigma * deltas))


def composite(rgb: torch.Tensor, sigma: torch.Tensor, depths: torch.Tensor, sample_valid: torch.Tensor,
              white_background: bool = False, deltas: torch.Tensor | None = None) -> Composited:
    """Composite S samples per ray front to back.

    Transmittance T_i = Π_{j<i} (1 − α_j + 1e-10) (IBRNet's +1e-10 keeps gradients alive through
    opaque samples); weights w_i = α_i·T_i; rgb = Σ w_i c_i (+ (1 − Σ w) on a white background);
    depth = Σ w_i z_i. A ray is valid when more than 8 of its samples are valid.
    Args:
        rgb: (R, S, 3); sigma: (R, S) >= 0; depths: (R, S); sample_valid: (R, S) bool (seen by >= 2 views).
        deltas: optional (R, S) interval lengths (None = IBRNet's alpha without them).
    """
    if rgb.shape[:-1] != sigma.shape or sigma.shape != depths.shape or sample_valid.shape != sigma.shape:
        raise ValueError(f"shape mismatch: rgb {tuple(rgb.shape)}, sigma {tuple(sigma.shape)}, "
                         f"depths {tuple(depths.shape)}, sample_valid {tuple(sample_valid.shape)}")
    alpha = alpha_from_density(sigma, deltas)
    transmittance = torch.cumprod(1.0 - alpha + 1e-10, dim=-1)
    transmittance = torch.cat([torch.ones_like(transmittance[:, :1]), transmittance[:, :-1]], dim=-1)
    weights = alpha * transmittance
    opacity = weights.sum(dim=-1)
    colour = (weights[..., None] * rgb).sum(dim=1)
    if white_background:
        colour = colour + (1.0 - opacity[:, None])
    valid = sample_valid.sum(dim=-1) > MIN_VALID_SAMPLES_PER_RAY
    return Composited(colour, (weights * depths).sum(dim=-1), weights, opacity, valid)
