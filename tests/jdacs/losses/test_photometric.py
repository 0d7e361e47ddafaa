"""Photometric loss: ~0 at the true depth (analytic plane, synthetic scene), the original's formulas, SSIM, top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jdacs.losses.photometric import (
    PhotometricLoss,
    reconstruction_losses,
    robust_view_selection,
    ssim_dissimilarity,
    warp_sources_to_reference,
)
from jdacs.losses.smoothness import edge_aware_smoothness
from tests.jdacs.losses import render_plane, render_sample


@pytest.fixture(scope="module")
def plane():
    return render_plane()


def _parts(loss, sample, depth=None, K_src=None):
    depth, K_ref, own_K_src, src_from_ref = sample.geometry(depth)
    K_src = own_K_src if K_src is None else K_src
    return loss(sample.images_small[:, 0], sample.images_small[:, 1:], depth, K_ref, K_src, src_from_ref)[1]


def test_plane_loss_is_near_zero_at_the_true_depth_and_grows_away_from_it(plane):
    """At the true depth only bilinear-interpolation error remains (SSIM: windows on the valid-mask edge)."""
    loss = PhotometricLoss()
    true = _parts(loss, plane)
    assert true["reconstruction"] < 1e-5
    assert true["ssim"] < 5e-3
    for wrong_depth in (plane.depth * 1.15, plane.depth * 0.85):
        wrong = _parts(loss, plane, wrong_depth)
        assert wrong["reconstruction"] > 30 * true["reconstruction"]
        assert wrong["ssim"] > 2.5 * true["ssim"]


def test_sources_are_projected_with_their_own_intrinsics(plane):
    """Using K_ref for every source (the original's shortcut) is wrong for the source with other intrinsics."""
    loss = PhotometricLoss()
    own = _parts(loss, plane)
    borrowed = _parts(loss, plane, K_src=plane.K[:, None].expand(1, 4, 3, 3))
    assert borrowed["reconstruction"] > 10 * own["reconstruction"]


@pytest.fixture(scope="module")
def scene():
    return render_sample(num_views=5, depth_hw=(32, 40))


def test_scene_loss_is_lower_at_the_ground_truth_depth(scene):
    loss = PhotometricLoss()
    true = _parts(loss, scene)
    for wrong_depth in (scene.depth + 30.0, scene.depth - 30.0, torch.full_like(scene.depth, scene.depth.mean())):
        wrong = _parts(loss, scene, wrong_depth)
        assert wrong["reconstruction"] > 1.2 * true["reconstruction"]
        assert wrong["ssim"] > 1.2 * true["ssim"]


def test_total_is_the_weighted_sum_and_gradient_reaches_the_depth(scene):
    loss = PhotometricLoss(w_reconstruction=2.0, w_ssim=3.0, w_smooth=0.5)
    depth = (scene.depth + 5.0).requires_grad_()
    total, parts = loss(scene.images_small[:, 0], scene.images_small[:, 1:], *scene.geometry(depth))
    weighted = 2 * parts["reconstruction"] + 3 * parts["ssim"] + 0.5 * parts["smoothness"]
    assert total.item() == pytest.approx(weighted.item(), rel=1e-6)
    total.backward()
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0


def _gradients_hwc(t):
    return t[:, :, 1:] - t[:, :, :-1], t[:, 1:] - t[:, :-1]


def _original_loss(ref, src, depth, K_ref, K_src, rel, k=3):
    """Slow reference: JDACS's `UnSupLoss` structure (BHWC, one source at a time) on our warp."""
    ref_hwc = ref.permute(0, 2, 3, 1)
    reprojection, ssim_loss = [], 0.0
    for v in range(src.shape[1]):
        warped, valid = warp_sources_to_reference(src[:, v:v + 1], depth, K_ref, K_src[:, v:v + 1], rel[:, v:v + 1])
        warped, mask = warped[:, 0].permute(0, 2, 3, 1), valid[:, 0, :, :, None].float()
        (ref_dx, ref_dy), (w_dx, w_dy) = _gradients_hwc(ref_hwc * mask), _gradients_hwc(warped * mask)
        rec = 0.5 * F.smooth_l1_loss(warped * mask, ref_hwc * mask) + 0.5 * (
            F.smooth_l1_loss(w_dx, ref_dx) + F.smooth_l1_loss(w_dy, ref_dy))
        reprojection.append(rec + 1e4 * (1 - mask))
        if v < 2:
            ssim_mask = F.avg_pool2d(mask.permute(0, 3, 1, 2), 3, 1)
            ssim_loss = ssim_loss + torch.mean(ssim_mask * ssim_dissimilarity(ref, warped.permute(0, 3, 1, 2)))
    volume = torch.stack(reprojection).permute(1, 2, 3, 4, 0)
    top = -torch.topk(-volume, k=k, sorted=False)[0]
    top = top * (top < 1e4).float()
    smooth = edge_aware_smoothness(depth, ref)
    return 12 * torch.mean(top.sum(-1)) + 6 * ssim_loss + 0.18 * smooth


def test_matches_the_original_formulas_on_random_inputs(scene):
    generator = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 3, 32, 40, generator=generator)
    src = torch.randn(2, 4, 3, 32, 40, generator=generator)
    depth = 500 + 200 * torch.rand(2, 32, 40, generator=generator)
    K_ref, K_src, rel = scene.K.expand(2, 3, 3), scene.K_src.expand(2, 4, 3, 3), scene.src_from_ref.expand(2, 4, 4, 4)
    total, _ = PhotometricLoss()(ref, src, depth, K_ref, K_src, rel)
    assert total.item() == pytest.approx(_original_loss(ref, src, depth, K_ref, K_src, rel).item(), rel=1e-5)


def test_robust_selection_sums_the_three_smallest_valid_views():
    losses = torch.tensor([0.5, 0.1, 0.4, 0.2, 0.3])
    valid = torch.ones(1, 5, 1, 4, dtype=torch.bool)
    valid[0, 1, 0, 1] = False  # pixel 1: view 1 (0.1) invalid -> 0.2 + 0.3 + 0.4
    valid[0, :3, 0, 2] = False  # pixel 2: only views 3 and 4 valid -> 0.2 + 0.3
    valid[0, :, 0, 3] = False  # pixel 3: nothing valid -> 0
    expected = (0.6 + 0.9 + 0.5 + 0.0) / 4
    assert robust_view_selection(losses, valid, k=3).item() == pytest.approx(expected)
    assert robust_view_selection(losses, valid[:, :, :, :1], k=1).item() == pytest.approx(0.1)


def test_robust_selection_needs_k_sources(plane):
    match = r"at least k = 3 source views \(V − 1 >= k\), got 2"
    with pytest.raises(ValueError, match=match):
        robust_view_selection(torch.tensor([0.1, 0.2]), torch.ones(1, 2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=match):
        PhotometricLoss()(plane.images_small[:, 0], plane.images_small[:, 1:3], plane.depth, plane.K,
                          plane.K_src[:, :2], plane.src_from_ref[:, :2])
    PhotometricLoss(num_best_views=2)(plane.images_small[:, 0], plane.images_small[:, 1:3], plane.depth, plane.K,
                                      plane.K_src[:, :2], plane.src_from_ref[:, :2])


def test_reconstruction_term_counts_invalid_pixels_as_zeros():
    """warped = ref + 0.5 on valid pixels of a constant image: colour term 0.125·valid fraction, gradients
    only across the valid/invalid boundary."""
    ref = torch.ones(1, 3, 4, 4)
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., :, :2] = True
    warped = (ref + 0.5)[:, None]
    # valid half: |diff| = 0.5 -> 0.125 on 8 of 16 pixels; x-gradient differs by 1.5 - 1 = 0.5 on the 4 boundary
    # pairs of 12 -> 0.125·4/12; y-gradients agree
    expected = 0.5 * 0.125 * 0.5 + 0.5 * (0.125 * 4 / 12)
    assert reconstruction_losses(warped, ref, valid).item() == pytest.approx(expected)


def test_ssim_of_identical_images_is_zero_and_output_is_unpadded():
    x = torch.rand(2, 3, 5, 7)
    out = ssim_dissimilarity(x, x)
    assert out.shape == (2, 3, 3, 5)
    assert out.abs().max() < 1e-6


def test_ssim_matches_a_hand_computation_on_a_3x3_patch():
    x = np.array([[0.1, 0.5, 0.9], [0.3, 0.2, 0.7], [0.8, 0.4, 0.6]])
    y = np.array([[0.2, 0.4, 0.8], [0.1, 0.3, 0.9], [0.7, 0.6, 0.5]])
    mx, my = x.mean(), y.mean()
    vx, vy, cxy = (x * x).mean() - mx**2, (y * y).mean() - my**2, (x * y).mean() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    out = ssim_dissimilarity(torch.tensor(x)[None, None], torch.tensor(y)[None, None])
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(np.clip((1 - ssim) / 2, 0, 1), rel=1e-9)
