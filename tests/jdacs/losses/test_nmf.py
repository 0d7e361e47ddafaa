"""NMF: recovers a low-rank non-negative matrix, seeded, non-negative, JDACS's stopping rule."""

from __future__ import annotations

import torch

from jdacs.losses.nmf import nmf


def _low_rank(seed: int, n: int = 40, m: int = 30, k: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, k, generator=generator, dtype=torch.float64) @ torch.rand(
        k, m, generator=generator, dtype=torch.float64)


def _relative_error(V, W, H) -> float:
    return (torch.linalg.matrix_norm(V - W @ H) / torch.linalg.matrix_norm(V)).max().item()


def test_recovers_a_low_rank_nonnegative_matrix():
    V = _low_rank(0)
    W, H = nmf(V, 3, max_iter=3000, tol=0, generator=torch.Generator().manual_seed(1))
    assert W.shape == (40, 3) and H.shape == (3, 30)
    assert (W >= 0).all() and (H >= 0).all()
    assert _relative_error(V, W, H) < 1e-2
    # too few parts cannot reach that error: the rank matters
    W2, H2 = nmf(V, 1, max_iter=3000, tol=0, generator=torch.Generator().manual_seed(1))
    assert _relative_error(V, W2, H2) > 3e-2


def test_seeded_determinism():
    V = _low_rank(1)

    def run(seed):
        return nmf(V, 3, max_iter=20, generator=torch.Generator().manual_seed(seed))

    (W_a, H_a), (W_b, H_b), (W_c, _) = run(1), run(1), run(2)
    assert torch.equal(W_a, W_b) and torch.equal(H_a, H_b)
    assert not torch.allclose(W_a, W_c)


def test_stops_at_the_first_tolerance_check_without_enough_progress():
    """Errors are checked after updates 1, 11, 21, ...: with tol 1e-2 this sparse 0/1 matrix stops after 21
    updates, a rank-2 matrix still improves enough to run all 50."""
    generator = torch.Generator().manual_seed(3)
    rank_two = torch.rand(20, 2, generator=generator, dtype=torch.float64) @ torch.rand(
        2, 15, generator=generator, dtype=torch.float64)
    sparse = (torch.rand(20, 15, generator=generator, dtype=torch.float64) > 0.8).double()
    for V, num_updates in ((rank_two, 50), (sparse, 21)):
        W, H = nmf(V, 2, max_iter=50, tol=1e-2, generator=torch.Generator().manual_seed(1))
        W_n, H_n = nmf(V, 2, max_iter=num_updates, tol=0, generator=torch.Generator().manual_seed(1))
        assert torch.equal(W, W_n) and torch.equal(H, H_n)
        W_more, _ = nmf(V, 2, max_iter=num_updates + 1, tol=0, generator=torch.Generator().manual_seed(1))
        assert num_updates == 50 or not torch.equal(W, W_more)


def test_init_and_first_update_are_lee_seung_with_w_first():
    """W0, H0 = |N(0, 1)|·sqrt(mean(V)/k) drawn in that order; W is updated with H0, then H with the new W."""
    V = _low_rank(2, n=6, m=5, k=2)
    W, H = nmf(V, 2, max_iter=1, tol=0, generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    scale = torch.sqrt(V.mean() / 2)
    W0 = torch.randn(6, 2, generator=generator, dtype=torch.float64).abs() * scale
    H0 = torch.randn(2, 5, generator=generator, dtype=torch.float64).abs() * scale
    W1 = W0 * (V @ H0.T) / (W0 @ H0 @ H0.T)
    torch.testing.assert_close(W, W1)
    torch.testing.assert_close(H, H0 * (W1.T @ V) / (W1.T @ W1 @ H0))
