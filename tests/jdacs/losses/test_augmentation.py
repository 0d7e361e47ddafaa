"""Augmentation consistency: seeded augmented views, the random box, the loss outside the box, the schedule."""

from __future__ import annotations

import pytest
import torch

from jdacs.losses.augmentation import AugmentationConsistencyLoss, augment_views, random_box_mask, weight_at_epoch


def _images() -> torch.Tensor:
    """(2, 3, 3, 16, 20): every view of a batch element is the same image, so differences come from the jitter."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 1, 3, 16, 20, generator=generator).expand(2, 3, 3, 16, 20).contiguous()


def test_augment_views_is_reproducible_from_the_generator_only():
    images = _images()
    global_state = torch.get_rng_state()
    first = augment_views(images, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(123)  # the global RNG plays no role
    assert torch.equal(first, augment_views(images, torch.Generator().manual_seed(5)))
    assert not torch.allclose(first, augment_views(images, torch.Generator().manual_seed(6)))


def test_augment_views_changes_each_view_differently_and_stays_in_range():
    images = _images()
    out = augment_views(images, torch.Generator().manual_seed(5))
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1
    for b in range(2):
        for v in range(3):
            assert (out[b, v] - images[b, v]).abs().mean() > 1e-2
        for v, w in ((0, 1), (0, 2), (1, 2)):
            assert (out[b, v] - out[b, w]).abs().mean() > 1e-2


def test_identity_jitter_leaves_only_the_gamma():
    """With zero jitter strengths and γ fixed to 2, the output is the input squared."""
    images = _images()
    out = augment_views(images, torch.Generator().manual_seed(5), brightness=0, contrast=0, saturation=0, hue=0,
                        gamma_range=(2.0, 2.0))
    torch.testing.assert_close(out, images**2)


def test_brightness_only_scales_every_pixel_by_one_factor_per_view():
    images = 0.5 * _images()  # no clipping for factors up to 2
    out = augment_views(images, torch.Generator().manual_seed(5), brightness=0.5, contrast=0, saturation=0, hue=0,
                        gamma_range=(1.0, 1.0))
    factors = out.flatten(2).sum(dim=2) / images.flatten(2).sum(dim=2)  # (B, V)
    torch.testing.assert_close(out, images * factors[..., None, None, None])
    assert ((factors >= 0.5) & (factors <= 1.5)).all() and factors.std() > 0.05


def test_box_mask_area_shape_and_seeding():
    H, W = 30, 41
    corners = set()
    for seed in range(20):
        mask = random_box_mask(H, W, torch.Generator().manual_seed(seed))
        assert mask.shape == (H, W) and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        zeros = (mask == 0).nonzero()
        top, left = zeros.min(dim=0).values.tolist()
        bottom, right = zeros.max(dim=0).values.tolist()
        assert (bottom - top + 1, right - left + 1) == (H // 3, W // 3)
        assert len(zeros) == (H // 3) * (W // 3)  # one full rectangle
        corners.add((top, left))
        assert torch.equal(mask, random_box_mask(H, W, torch.Generator().manual_seed(seed)))
    assert len(corners) > 10


def _depths_and_box():
    """A 64x80 image box mask and 16x20 depths; the box is zero in image rows 16..35, columns 20..45."""
    box = torch.ones(64, 80)
    box[16:36, 20:46] = 0
    pseudo = 500 + 100 * torch.rand(2, 16, 20, generator=torch.Generator().manual_seed(0))
    inside = torch.zeros(16, 20, dtype=torch.bool)
    inside[4:9, 5:12] = True  # nearest ×0.25 samples image pixel (4i, 4j)
    return box, pseudo, inside


def test_augmentation_loss_is_zero_for_identical_depths_and_ignores_the_box():
    box, pseudo, inside = _depths_and_box()
    loss = AugmentationConsistencyLoss(weight=0.01)
    assert loss(pseudo.clone(), pseudo, box)[0].item() == 0.0
    changed_inside = torch.where(inside, pseudo + 40.0, pseudo)
    assert loss(changed_inside, pseudo, box)[0].item() == 0.0
    changed_outside = torch.where(inside, pseudo, pseudo + 0.5)
    weighted, parts = loss(changed_outside, pseudo, box)
    assert parts["augmentation"].item() == pytest.approx(0.125)  # smooth-L1(0.5) = 0.5·0.5²
    assert weighted.item() == pytest.approx(0.01 * 0.125)
    assert loss(changed_outside, pseudo, box, weight=0.16)[0].item() == pytest.approx(0.16 * 0.125)
    ring = torch.zeros(16, 20, dtype=torch.bool)  # the depth pixels just outside the box: all kept
    ring[3:10, 4:13] = True
    ring &= ~inside
    kept = 2 * (16 * 20 - int(inside.sum()))
    ring_loss = loss(torch.where(ring, pseudo + 0.5, pseudo), pseudo, box)[1]["augmentation"]
    assert ring_loss.item() == pytest.approx(0.125 * 2 * int(ring.sum()) / kept)


def test_augmentation_loss_gradient_reaches_only_the_augmented_depth():
    box, pseudo, _ = _depths_and_box()
    depth_aug = (pseudo + 3.0).requires_grad_()
    pseudo = pseudo.clone().requires_grad_()
    AugmentationConsistencyLoss()(depth_aug, pseudo, box.expand(2, 64, 80))[0].backward()
    assert depth_aug.grad.abs().sum() > 0 and pseudo.grad is None


def test_weight_schedule_doubles_at_epochs_1_3_5_7():
    weights = [weight_at_epoch(epoch) for epoch in range(10)]
    assert weights == pytest.approx([0.01, 0.02, 0.02, 0.04, 0.04, 0.08, 0.08, 0.16, 0.16, 0.16])
    assert weight_at_epoch(4, base=1.0, doubling_epochs=(2,)) == 2.0
