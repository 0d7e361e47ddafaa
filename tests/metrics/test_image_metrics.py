"""PSNR / SSIM / LPIPS against hand-computed values, skimage, TF's formula and the lpips package itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from multiview.metrics import image as metrics
from multiview.metrics.image import ImageMetrics, build_lpips, lpips, lpips_heads_path, lpips_with, psnr, ssim, ssim_map
from multiview.vision.backbones import PretrainedWeightsMissing


def smooth_pair(rng: np.random.Generator, height: int, width: int, channels: int = 3, noise: float = 0.05):
    """A smooth random image in [0, 1] and a perturbed copy (float64, channels last)."""
    image = gaussian_filter(rng.random((height, width, channels)), (2, 2, 0))
    image = (image - image.min()) / (image.max() - image.min())
    other = np.clip(image + noise * gaussian_filter(rng.standard_normal(image.shape), (1, 1, 0)) * 5, 0, 1)
    return image, other


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """skimage's SSIM with the settings equal to tf.image.ssim: reflect-filter, then crop (11 − 1)/2 = 5 px per side,
    i.e. exactly TF's VALID region; Gaussian σ 1.5 truncated at 3.5σ = an 11-tap window; population covariance."""
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
                                 channel_axis=-1)


# --- PSNR --------------------------------------------------------------------------------------------------------


def test_psnr_of_constant_images_differing_by_a_tenth_is_20_db():
    a = np.full((8, 9, 3), 0.5)
    assert psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01 -> 10·log10(100)


def test_psnr_of_a_batch_is_the_mean_of_per_image_values():
    gt = np.full((2, 6, 6, 3), 0.5)
    pred = gt + np.array([0.1, 0.01])[:, None, None, None]  # 20 dB and 40 dB
    np.testing.assert_allclose(psnr(pred, gt, reduction="none"), [20.0, 40.0], atol=1e-9)
    assert psnr(pred, gt) == pytest.approx(30.0, abs=1e-9)  # not the PSNR of the mean MSE (≈ 23 dB)


def test_psnr_accepts_torch_and_is_infinite_for_identical_images():
    image = torch.rand(5, 7, 3)
    assert psnr(image, image.clone()) == float("inf")
    assert psnr(image, image + 0.1) == pytest.approx(20.0, abs=1e-4)


def test_metrics_reject_mismatched_or_non_image_shapes():
    with pytest.raises(ValueError, match=r"same shape.*\(4, 4, 3\).*\(4, 5, 3\)"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="channels-last"):
        ssim(np.zeros((16, 16)), np.zeros((16, 16)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)))
    with pytest.raises(ValueError, match="reduction"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), reduction="sum")


# --- SSIM --------------------------------------------------------------------------------------------------------


def test_ssim_of_identical_images_is_one(rng):
    image, _ = smooth_pair(rng, 24, 31)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert ssim(image.astype(np.float32), image.astype(np.float32)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(32, 32, 3), (40, 57, 3), (11, 11, 3), (23, 19, 1)])
def test_ssim_equals_skimage_with_matching_settings(rng, shape):
    a, b = smooth_pair(rng, *shape)
    expected = skimage_ssim(a, b)
    assert 0.2 < expected < 0.999  # a non-trivial pair
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)  # float64: the same quantity up to rounding
    assert ssim(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(expected, abs=2e-5)  # float32


def test_ssim_of_a_batch_is_the_mean_of_skimage_per_image_values(rng):
    pairs = [smooth_pair(rng, 20, 26, noise=noise) for noise in (0.02, 0.1)]
    pred, gt = np.stack([p for p, _ in pairs]), np.stack([g for _, g in pairs])
    expected = [skimage_ssim(p, g) for p, g in pairs]
    np.testing.assert_allclose(ssim(pred, gt, reduction="none"), expected, atol=1e-10)
    assert ssim(pred, gt) == pytest.approx(np.mean(expected), abs=1e-10)


def _tf_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """A slow transcription of tf.image.ssim (TF 1.15 `_fspecial_gauss`, `_ssim_helper`, VALID depthwise conv)."""
    coords = np.arange(11, dtype=np.float64) - 5.0
    g = -0.5 * coords**2 / 1.5**2
    logits = g[None, :] + g[:, None]
    kernel = np.exp(logits) / np.exp(logits).sum()  # softmax over the flattened window
    height, width = a.shape[0] - 10, a.shape[1] - 10

    def reducer(x):
        out = np.zeros((height, width, x.shape[-1]))
        for i in range(11):
            for j in range(11):
                out += kernel[i, j] * x[i : i + height, j : j + width]
        return out

    c1, c2 = 0.01**2, 0.03**2
    mean0, mean1 = reducer(a), reducer(b)
    num0 = mean0 * mean1 * 2.0
    den0 = mean0**2 + mean1**2
    luminance = (num0 + c1) / (den0 + c1)
    num1 = reducer(a * b) * 2.0
    den1 = reducer(a**2 + b**2)
    cs = (num1 - num0 + c2) / (den1 - den0 + c2)
    return float((luminance * cs).mean(axis=(0, 1)).mean())


def test_ssim_equals_a_transcription_of_tensorflows_ssim(rng):
    a, b = smooth_pair(rng, 21, 27)
    assert ssim(a, b) == pytest.approx(_tf_ssim_reference(a, b), abs=1e-12)


def test_ssim_map_covers_the_valid_region_only():
    a = torch.rand(2, 30, 41, 3)
    assert ssim_map(a, a.flip(1)).shape == (2, 3, 20, 31)


# --- LPIPS -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_of_identical_images_is_zero_with_a_random_backbone(rng, net):
    a, b = smooth_pair(rng, 32, 40)
    assert lpips(a, a, net=net, weights="random") == 0.0
    assert lpips(a, b, net=net, weights="random") != 0.0


def test_lpips_heads_ship_with_the_lpips_package_and_load_offline():
    for net in ("vgg", "alex"):
        path = lpips_heads_path(net)
        assert path.is_file(), path
        heads = torch.load(path, map_location="cpu", weights_only=True)
        assert sorted(heads) == [f"lin{k}.model.1.weight" for k in range(5)]


def test_our_lpips_equals_the_lpips_package_with_the_same_backbone(monkeypatch, rng):
    """Same backbone weights (the package's own random AlexNet) and the package's v0.1 heads -> same values."""
    import warnings

    import lpips as lpips_package

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips_package.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    modules = {int(name): module for block in reference.net.children() for name, module in block.named_children()}
    features = torch.nn.Sequential(*(modules[i] for i in range(len(modules))))
    monkeypatch.setattr(metrics, "_torchvision_features", lambda net: features)
    ours = build_lpips("alex", "imagenet")
    a, b = smooth_pair(rng, 48, 40)
    x, y = (torch.from_numpy(v).float().permute(2, 0, 1)[None] for v in (a, b))
    with torch.no_grad():
        expected = reference(x, y, normalize=True).item()
        assert reference(2 * x - 1, 2 * y - 1).item() == pytest.approx(expected, abs=1e-7)  # normalize=True meaning
    assert lpips_with(ours, a, b) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training


@pytest.mark.parametrize("net, filename", [("vgg", "vgg16-397923af.pth"), ("alex", "alexnet-owt-7be5be79.pth")])
def test_missing_lpips_backbone_weights_raise_one_error_naming_the_file(monkeypatch, tmp_path, net, filename):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(PretrainedWeightsMissing) as error:
        build_lpips(net, "imagenet")
    message = str(error.value)
    assert filename in message and str(tmp_path / "hub" / "checkpoints" / filename) in message
    with pytest.raises(PretrainedWeightsMissing, match=filename):
        ImageMetrics(lpips_net=net)


def test_lpips_rejects_images_too_small_for_the_backbone():
    with pytest.raises(ValueError, match="alex backbone needs images of at least 31x31"):
        lpips(np.zeros((30, 40, 3)), np.zeros((30, 40, 3)), net="alex", weights="random")


def test_lpips_rejects_unknown_options():
    with pytest.raises(ValueError, match="net"):
        build_lpips("squeeze", "random")
    with pytest.raises(ValueError, match="weights"):
        build_lpips("vgg", "places")


# --- ImageMetrics ------------------------------------------------------------------------------------------------


def test_image_metrics_scores_and_records_its_protocol(rng):
    a, b = smooth_pair(rng, 32, 36)
    scorer = ImageMetrics(lpips_net="alex", lpips_weights="random")
    same = scorer(a, a)
    assert same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0) and same["lpips"] == 0.0
    scores = scorer(a, b)
    assert scores["psnr"] == pytest.approx(psnr(a, b)) and scores["ssim"] == pytest.approx(ssim(a, b), abs=1e-6)
    protocol = scorer.protocol
    assert protocol["lpips"]["net"] == "alex" and protocol["lpips"]["version"] == "0.1"
    assert "random" in protocol["lpips"]["backbone_weights"] and protocol["lpips"]["computed"]
    assert protocol["ssim"]["filtering"].startswith("valid") and protocol["ssim"]["sigma"] == 1.5


def test_image_metrics_without_lpips_say_it_was_not_computed(rng):
    a, b = smooth_pair(rng, 16, 16)
    scorer = ImageMetrics(lpips_net=None)
    assert scorer(a, b)["lpips"] is None
    assert scorer.protocol["lpips"]["computed"] is False
