import math

import torch

from multiview.render.compositing import composite


def test_single_opaque_sample_gives_its_colour_and_depth():
    S = 12
    sigma = torch.zeros(1, S)
    sigma[0, 4] = 1e4
    rgb = torch.rand(1, S, 3)
    depths = torch.linspace(1, 2, S)[None]
    out = composite(rgb, sigma, depths, torch.ones(1, S, dtype=torch.bool))
    torch.testing.assert_close(out.rgb, rgb[:, 4], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.depth, depths[:, 4], atol=1e-5, rtol=0)
    assert bool(out.valid[0])


def test_constant_density_matches_closed_form():
    """With alpha = 1 − exp(−σ) (no interval length), weight_i = (1 − e^−σ)·e^(−iσ) (up to the 1e-10 term)."""
    S, sigma_value = 20, 0.3
    sigma = torch.full((2, S), sigma_value, dtype=torch.float64)
    out = composite(torch.ones(2, S, 3, dtype=torch.float64), sigma, torch.ones(2, S, dtype=torch.float64),
                    torch.ones(2, S, dtype=torch.bool), white_background=True)
    expected = torch.tensor([(1 - math.exp(-sigma_value)) * math.exp(-i * sigma_value) for i in range(S)],
                            dtype=torch.float64)
    torch.testing.assert_close(out.weights[0], expected, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(out.opacity, torch.full((2,), 1 - math.exp(-S * sigma_value), dtype=torch.float64))
    torch.testing.assert_close(out.rgb, torch.ones(2, 3, dtype=torch.float64))  # white + white


def test_white_background_fills_empty_rays_and_ray_validity_rule():
    S = 16
    valid = torch.zeros(2, S, dtype=torch.bool)
    valid[0, :9] = True  # 9 > 8: valid
    valid[1, :8] = True  # 8: invalid
    out = composite(torch.zeros(2, S, 3), torch.zeros(2, S), torch.ones(2, S), valid, white_background=True)
    torch.testing.assert_close(out.rgb, torch.ones(2, 3))
    assert out.valid.tolist() == [True, False]


def test_gradients_finite_for_extreme_densities():
    sigma = torch.tensor([[0.0, 1e-8, 1e3, 1e8, 0.0, 5.0]], requires_grad=True)
    rgb = torch.rand(1, 6, 3, requires_grad=True)
    out = composite(rgb, sigma, torch.linspace(1, 2, 6)[None], torch.ones(1, 6, dtype=torch.bool))
    (out.rgb.sum() + out.depth.sum()).backward()
    assert torch.isfinite(sigma.grad).all() and torch.isfinite(rgb.grad).all()
    assert sigma.grad.abs().sum() > 0
