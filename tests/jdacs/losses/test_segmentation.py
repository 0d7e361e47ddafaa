"""Co-segmentation loss (random-weight VGG19: tests only), its NMF retries, and the offline weight errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models import SqueezeNet1_0_Weights, VGG19_Weights

from jdacs.losses.segmentation import CoSegmentationLoss, factorise_parts
from multiview.vision.backbones import (
    PretrainedWeightsMissing,
    load_torchvision_weights,
    load_vgg19_features,
    weights_cache_path,
)
from tests.jdacs.losses import render_plane, render_sample


@pytest.fixture(scope="module")
def coseg():
    """112×112 VGG inputs (7×7 part maps) instead of 224: 4× less VGG time on the test CPU."""
    return CoSegmentationLoss(backbone="random", feature_size=112)


@pytest.fixture(scope="module")
def scene():
    return render_sample(num_views=3, depth_hw=(16, 20))


def test_vgg_part_maps_loss_and_gradient(coseg, scene):
    """Reference + one source; one VGG pass for the maps, one inside forward: finite, weighted, the gradient
    reaches the depth (only through the warp: the maps carry none)."""
    assert coseg.backbone == "random" and len(coseg.state_dict()) == 0  # the VGG stays out of checkpoints
    images = scene.images[:, :2]
    maps = coseg.part_maps(images)
    assert maps.shape == (1, 2, 4, 7, 7) and (maps >= 0).all() and not maps.requires_grad
    depth = (scene.depth + 10.0).requires_grad_()
    geometry = depth, scene.K, scene.K_src[:, :1], scene.src_from_ref[:, :1]
    weighted, parts = coseg(images, *geometry)
    assert torch.isfinite(weighted) and weighted.item() > 0
    assert weighted.item() == pytest.approx(0.01 * parts["segmentation"].item())
    assert parts["segmentation"].item() == pytest.approx(coseg.cross_entropy(maps, *geometry).item(), rel=1e-5)
    weighted.backward()
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0


def test_cross_entropy_is_lowest_at_the_true_depth(coseg):
    """Part maps that follow the scene — logits = 1000 × the views' chromaticity x − mean_c(x), k = 3 colour
    "parts", given at the depth resolution so the upsampling is the identity — agree best when warped with the
    true depth: clearly on the analytic plane, weakly on the rendered scene (occlusions, flat regions). (The
    random VGG's NMF maps are near-uniform logits: with them the loss barely depends on the depth.)"""
    for sample, margin, wrong_depths in (
        (render_plane(), 10.0, lambda d: (d * 1.15, d * 0.85)),
        (render_sample(num_views=3), 1.03, lambda d: (d + 30.0, d - 30.0, torch.full_like(d, d.mean()))),
    ):
        maps = 1000 * (sample.images_small - sample.images_small.mean(dim=2, keepdim=True))
        true = coseg.cross_entropy(maps, *sample.geometry())
        for wrong in wrong_depths(sample.depth):
            assert coseg.cross_entropy(maps, *sample.geometry(wrong)) > margin * true


def test_cross_entropy_sums_sources_and_skips_invalid_pixels(coseg, scene):
    """Uniform logits give ln k per valid pixel: the loss is (V − 1)·ln k; a source seen nowhere adds 0."""
    maps = torch.zeros(1, 3, 4, 16, 20)
    expected = 2 * torch.log(torch.tensor(4.0)).item()
    assert coseg.cross_entropy(maps, *scene.geometry()).item() == pytest.approx(expected)
    behind = scene.src_from_ref.clone()
    behind[:, 1, 2, 3] -= 1e5  # the second source now sees every point behind it: no valid pixel
    assert coseg.cross_entropy(maps, scene.depth, scene.K, scene.K_src, behind).item() == pytest.approx(expected / 2)


def test_nmf_retries_then_fails_clearly_on_non_finite_features():
    features = torch.rand(2, 30, 8, generator=torch.Generator().manual_seed(0))
    W = factorise_parts(features, 3, 50, 1e-4, seed=1)
    assert W.shape == (2, 30, 3) and torch.isfinite(W).all()
    features[1, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="batch element 1 gave NaNs"):
        factorise_parts(features, 3, 50, 1e-4, seed=1)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "hub" / "checkpoints"


def test_missing_imagenet_weights_raise_one_clear_error(empty_cache):
    with pytest.raises(PretrainedWeightsMissing) as error:
        CoSegmentationLoss(backbone="imagenet")
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message
    assert str(empty_cache / "vgg19-dcbb9e9d.pth") in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert weights_cache_path(VGG19_Weights.IMAGENET1K_V1) == empty_cache / "vgg19-dcbb9e9d.pth"


def test_cached_weights_load_without_touching_the_global_rng(empty_cache):
    """The generic helper on a small model: a state dict in the cache is loaded; a corrupt file is reported."""
    weights = SqueezeNet1_0_Weights.IMAGENET1K_V1
    reference = torchvision.models.squeezenet1_0()
    path = weights_cache_path(weights)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    state = torch.get_rng_state()
    model = load_torchvision_weights(torchvision.models.squeezenet1_0, weights)
    assert torch.equal(torch.get_rng_state(), state)
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(PretrainedWeightsMissing, match="could not be loaded"):
        load_torchvision_weights(torchvision.models.squeezenet1_0, weights)


def test_random_backbone_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    first, second = load_vgg19_features("random"), load_vgg19_features("random")
    assert torch.equal(torch.get_rng_state(), state)
    assert len(first) == 36 and isinstance(first[-1], torch.nn.ReLU)  # relu5_4, the last MaxPool dropped
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not any(p.requires_grad for p in first.parameters()) and not first.training


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="imagenet"):
        CoSegmentationLoss(backbone="resnet")
