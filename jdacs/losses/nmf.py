"""Non-negative matrix factorisation V ≈ W·H by Lee–Seung multiplicative updates (JDACS's `NMF`).

As in JDACS (`models/seg_dff.py`): init |N(0, 1)|·sqrt(mean(V)/k) for W and H, then per iteration W is
updated first and H with the new W; zero denominators are replaced by 1e-7; every 10 iterations
(iteration indices 0, 10, 20, ...) the Frobenius error e is checked and the run stops when
(e_previous − e)/e_init < tol. One matrix per call (a batch is a loop, as in the original: batched
matmuls of these small matrices are much slower on a busy CPU than the loop).
"""

from __future__ import annotations

import torch

EPSILON = 1e-7
CHECK_EVERY = 10


def _nonzero(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t == 0, torch.full_like(t, EPSILON), t)


def nmf(V: torch.Tensor, k: int, max_iter: int = 50, tol: float = 1e-4, generator: torch.Generator | None = None):
    """Factorise a non-negative matrix.

    Args:
        V: (n, m) non-negative.
        k: number of parts.
        max_iter: maximum number of multiplicative updates; tol: relative-improvement stopping threshold
            (<= 0: always run max_iter).
        generator: source of the random init (a torch.Generator on V's device); None = the global RNG.
    Returns:
        W (n, k), H (k, m), both non-negative.
    """
    if V.dim() != 2:
        raise ValueError(f"V must be (n, m), got {tuple(V.shape)}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    n, m = V.shape
    scale = torch.sqrt(V.mean() / k)
    W = torch.randn(n, k, generator=generator, device=V.device, dtype=V.dtype).abs() * scale
    H = torch.randn(k, m, generator=generator, device=V.device, dtype=V.dtype).abs() * scale
    error_at_init = torch.linalg.matrix_norm(V - W @ H)
    previous_error = error_at_init
    for iteration in range(max_iter):
        W = W * (V @ H.T) / _nonzero(W @ (H @ H.T))
        H = H * (W.T @ V) / _nonzero(W.T @ W @ H)
        if tol > 0 and iteration % CHECK_EVERY == 0:
            error = torch.linalg.matrix_norm(V - W @ H)
            if (previous_error - error) / error_at_init < tol:
                break
            previous_error = error
    return W, H
