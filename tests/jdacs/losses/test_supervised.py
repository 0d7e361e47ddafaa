"""MVSNet_pytorch's supervised loss: smooth-L1 over the ground-truth mask."""

from __future__ import annotations

import pytest
import torch

from jdacs.losses.supervised import masked_smooth_l1_depth


def test_hand_computed_value_ignores_masked_pixels():
    gt = torch.tensor([[[500.0, 600.0, 700.0, 800.0]]])
    pred = gt + torch.tensor([[[0.5, -2.0, 50.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])  # the 50 mm error is outside the mask
    expected = (0.5 * 0.5**2 + (2.0 - 0.5) + 0.0) / 3
    assert masked_smooth_l1_depth(pred, gt, mask).item() == pytest.approx(expected)
    assert masked_smooth_l1_depth(pred, gt, mask > 0.5).item() == pytest.approx(expected)


def test_empty_mask_gives_zero_with_a_gradient_path():
    pred = torch.full((1, 2, 2), 3.0, requires_grad=True)
    loss = masked_smooth_l1_depth(pred, torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad.abs().sum() == 0


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same"):
        masked_smooth_l1_depth(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))
