import torch

from multiview.render.sampling import importance_depths, sample_pdf, stratified_depths


def slow_sample_pdf(bins, weights, u):
    """IBRNet's inverse CDF written as loops over rays, samples and bins."""
    weights = weights + 1e-5
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    out = torch.empty_like(u)
    num_bins = weights.shape[1]
    for r in range(u.shape[0]):
        for n in range(u.shape[1]):
            above = sum(int(u[r, n] >= cdf[r, i]) for i in range(num_bins))
            below = max(above - 1, 0)
            denom = cdf[r, above] - cdf[r, below]
            denom = 1.0 if denom < 1e-5 else denom
            t = (u[r, n] - cdf[r, below]) / denom
            out[r, n] = bins[r, below] + t * (bins[r, above] - bins[r, below])
    return out


def test_sample_pdf_matches_slow_reference_deterministic_and_random():
    torch.manual_seed(0)
    bins = torch.sort(torch.rand(5, 9, dtype=torch.float64) * 4 + 1, dim=-1).values
    weights = torch.rand(5, 8, dtype=torch.float64)
    weights[0] = 0.0  # degenerate: uniform after the +1e-5
    weights[1, 3] = 50.0  # peaked
    det = sample_pdf(bins, weights, 16, deterministic=True)
    u = torch.linspace(0, 1, 16, dtype=torch.float64).expand(5, -1)
    torch.testing.assert_close(det, slow_sample_pdf(bins, weights, u))
    generator = torch.Generator().manual_seed(3)
    rnd = sample_pdf(bins, weights, 16, generator=generator)
    u = torch.rand(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(rnd, slow_sample_pdf(bins, weights, u))


def test_sample_pdf_concentrates_where_the_weight_is():
    bins = torch.linspace(0, 10, 11).expand(2, -1).contiguous()
    weights = torch.zeros(2, 10)
    weights[:, 6] = 1.0
    samples = sample_pdf(bins, weights, 1000, generator=torch.Generator().manual_seed(0))
    assert ((samples >= 6) & (samples <= 7)).float().mean() > 0.99


def test_stratified_depths_linear_inverse_and_jitter_bounds():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([5.0, 4.0])
    lin = stratified_depths(near, far, 5, deterministic=True)
    torch.testing.assert_close(lin[0], torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    inv = stratified_depths(near, far, 5, inverse_depth=True, deterministic=True)
    torch.testing.assert_close(1.0 / inv[0], torch.linspace(1.0, 0.2, 5))
    jittered = stratified_depths(near, far, 64, inverse_depth=True, generator=torch.Generator().manual_seed(1))
    assert (jittered >= near[:, None] - 1e-6).all() and (jittered <= far[:, None] + 1e-6).all()
    assert (jittered[:, 1:] >= jittered[:, :-1]).all()
    assert not torch.allclose(jittered, stratified_depths(near, far, 64, inverse_depth=True, deterministic=True))


def test_importance_depths_sorted_and_inside_range():
    torch.manual_seed(0)
    near, far = torch.full((4,), 2.0), torch.full((4,), 6.0)
    for inverse in (False, True):
        coarse = stratified_depths(near, far, 16, inverse_depth=inverse, deterministic=True)
        weights = torch.softmax(torch.randn(4, 16), -1)
        fine = importance_depths(coarse, weights, 16, inverse_depth=inverse)
        assert fine.shape == (4, 32)
        assert (fine[:, 1:] >= fine[:, :-1]).all()
        assert (fine >= 2.0 - 1e-5).all() and (fine <= 6.0 + 1e-5).all()
