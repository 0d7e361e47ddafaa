"""Sample depths along rays: stratified (linear in depth or in inverse depth) and importance (inverse CDF).

Depth here is the ray parameter t of IBRNet-style rays whose camera-frame z component is 1, so
t equals camera z (see `multiview.geometry.projection.rays_through_pixels`).
"""

from __future__ import annotations

import torch


def stratified_depths(near: torch.Tensor, far: torch.Tensor, num_samples: int, inverse_depth: bool = False,
                      deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted sample depths in [near, far] per ray.

    Args:
        near, far: (R,) positive bounds with near < far.
        num_samples: S >= 2; the deterministic samples include both bounds (IBRNet's linspace).
        inverse_depth: space samples uniformly in 1/z (IBRNet's `inv_uniform`) instead of in z.
        deterministic: no jitter (evaluation). Otherwise each sample is drawn uniformly inside the
            interval between the midpoints of its neighbours (first/last intervals are half-width).
    Returns:
        (R, S) depths, increasing along S.
    """
    if near.shape != far.shape or near.dim() != 1:
        raise ValueError(f"near and far must both have shape (R,), got {tuple(near.shape)} and {tuple(far.shape)}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    steps = torch.linspace(0.0, 1.0, num_samples, device=near.device, dtype=near.dtype)
    if inverse_depth:
        depths = 1.0 / (1.0 / near[:, None] + steps * (1.0 / far[:, None] - 1.0 / near[:, None]))
    else:
        depths = near[:, None] + steps * (far - near)[:, None]
    if deterministic:
        return depths
    mids = 0.5 * (depths[:, 1:] + depths[:, :-1])
    upper = torch.cat([mids, depths[:, -1:]], dim=-1)
    lower = torch.cat([depths[:, :1], mids], dim=-1)
    u = torch.rand(depths.shape, device=near.device, dtype=near.dtype, generator=generator)
    return lower + (upper - lower) * u


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, num_samples: int, deterministic: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw samples from the piecewise-constant density given by `weights` over `bins` (inverse CDF).

    IBRNet's rule: weights + 1e-5, normalised; u = linspace(0, 1) when deterministic else U(0, 1);
    the bin is found with `searchsorted` (IBRNet counts with a Python loop: same result); inside the
    bin the sample is interpolated linearly, with a CDF step < 1e-5 treated as 1.
    Args:
        bins: (R, M + 1) increasing bin edges; weights: (R, M) non-negative, treated as constants.
    Returns:
        (R, N) samples (not sorted when random).
    """
    if bins.dim() != 2 or weights.shape != (bins.shape[0], bins.shape[1] - 1):
        raise ValueError(f"expected bins (R, M+1) and weights (R, M), got {tuple(bins.shape)}, {tuple(weights.shape)}")
    num_bins = weights.shape[-1]
    weights = weights.detach() + 1e-5
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # (R, M + 1)
    if deterministic:
        u = torch.linspace(0.0, 1.0, num_samples, device=bins.device, dtype=bins.dtype).expand(bins.shape[0], -1)
    else:
        u = torch.rand(bins.shape[0], num_samples, device=bins.device, dtype=bins.dtype, generator=generator)
    u = u.contiguous()
    above = torch.searchsorted(cdf, u, right=True).clamp(1, num_bins)
    below = above - 1
    cdf_below, cdf_above = cdf.gather(-1, below), cdf.gather(-1, above)
    bins_below, bins_above = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf_above - cdf_below
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    t = (u - cdf_below) / denom
    return bins_below + t * (bins_above - bins_below)


def importance_depths(depths: torch.Tensor, weights: torch.Tensor, num_samples: int, inverse_depth: bool = False,
                      deterministic: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """IBRNet's fine samples: `num_samples` depths drawn from coarse weights, merged with the coarse depths.

    Bins are the midpoints of the coarse depths (of 1/z, flipped to increase, when `inverse_depth`),
    with the weights of the interior samples. The coarse weights are detached.
    Args:
        depths: (R, S) coarse depths, increasing; weights: (R, S) their compositing weights.
    Returns:
        (R, S + num_samples) sorted depths.
    """
    inner = weights[:, 1:-1]
    if inverse_depth:
        inverse = 1.0 / depths
        mids = 0.5 * (inverse[:, 1:] + inverse[:, :-1])
        drawn = 1.0 / sample_pdf(mids.flip(-1), inner.flip(-1), num_samples, deterministic, generator)
    else:
        mids = 0.5 * (depths[:, 1:] + depths[:, :-1])
        drawn = sample_pdf(mids, inner, num_samples, deterministic, generator)
    return torch.sort(torch.cat([depths, drawn.detach()], dim=-1), dim=-1).values
