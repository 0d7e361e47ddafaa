"""Edge-aware smoothness against hand-computed 3x3 cases."""

from __future__ import annotations

import math

import pytest
import torch

from jdacs.losses.smoothness import edge_aware_smoothness

RAMP_X = torch.tensor([[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]])  # (1, 3, 3): +1 per column


def test_constant_depth_has_zero_smoothness():
    image = torch.rand(2, 3, 3, 3)
    assert edge_aware_smoothness(torch.full((2, 3, 3), 700.0), image).item() == 0.0


def test_ramp_on_a_flat_image():
    """∂x D = 1 everywhere, ∂y D = 0, weights exp(0) = 1 -> 1 + 0; the transposed ramp gives the same."""
    flat = torch.full((1, 3, 3, 3), 0.4)
    assert edge_aware_smoothness(RAMP_X, flat).item() == pytest.approx(1.0)
    assert edge_aware_smoothness(RAMP_X.mT, flat).item() == pytest.approx(1.0)


def test_ramp_across_an_image_edge_is_down_weighted():
    """Image columns (0, 0, 2) in channel 0 and 0 in channel 1: mean_c |∂x I| = (0, 1) per row, so the two
    x-differences of each row weigh 1 and exp(−λ); ∂y D = 0."""
    image = torch.zeros(1, 2, 3, 3)
    image[0, 0, :, 2] = 2.0
    for edge_lambda in (1.0, 0.5):
        expected = (1 + math.exp(-edge_lambda)) / 2
        assert edge_aware_smoothness(RAMP_X, image, edge_lambda).item() == pytest.approx(expected)
    # a y-ramp sees no y-edge in this image: full weight
    assert edge_aware_smoothness(RAMP_X.mT, image).item() == pytest.approx(1.0)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="expected depth"):
        edge_aware_smoothness(torch.zeros(1, 4, 4), torch.zeros(1, 3, 3, 3))
