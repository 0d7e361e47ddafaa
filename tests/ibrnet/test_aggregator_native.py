"""The compiled aggregator kernel against the aggregator's PyTorch path (same math, float32, no autograd)."""

from __future__ import annotations

import pytest
import torch

from ibrnet import aggregator_native
from ibrnet.aggregator import IBRNetAggregator
from ibrnet.model import IBRNet
from ibrnet.projector import project_to_sources
from multiview.engine import native_library
from tests.ibrnet.test_model import _toy_setup


def _aggregator(feature_channels: int, num_samples: int, anti_alias_pooling: bool, seed: int = 0):
    """Random weights with non-zero biases (the default init zeroes them, which would hide offset bugs)."""
    torch.manual_seed(seed)
    aggregator = IBRNetAggregator(feature_channels, num_samples, anti_alias_pooling)
    with torch.no_grad():
        for module in aggregator.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0.0, 0.3)
        aggregator.s.fill_(-0.7)  # the pooling weights use |s|
    return aggregator


def _inputs(R: int, S: int, V: int, channels: int, seed: int = 1, scale: float = 1.0):
    """Projector-like inputs (view-major storage) where some samples are seen by no, one or all views."""
    generator = torch.Generator().manual_seed(seed)
    rgb_feat = (scale * torch.rand(V, channels, R, S, generator=generator)).permute(2, 3, 0, 1)
    ray_diff = torch.randn(V, 4, R, S, generator=generator)
    ray_diff[:, 3] = ray_diff[:, 3].clamp(-1, 1)
    mask = torch.rand(V, R, S, generator=generator) > 0.3
    mask[:, 0, 0] = False  # seen by no view
    mask[:, 0, 1] = False
    mask[2, 0, 1] = True  # seen by one view
    mask[:, 0, 2] = True  # seen by every view
    return rgb_feat, ray_diff.permute(2, 3, 0, 1), mask.permute(1, 2, 0)


def _both_paths(aggregator, rgb_feat, ray_diff, mask):
    with torch.no_grad():
        aggregator.native_cpu_kernel = True
        native = aggregator(rgb_feat, ray_diff, mask)
        aggregator.native_cpu_kernel = False
        reference = aggregator(rgb_feat, ray_diff, mask)
    return native, reference


@pytest.fixture(autouse=True)
def _needs_the_kernel():
    assert aggregator_native.available(), "the C compiler of this machine must build ibrnet/aggregator_kernel.c"


@pytest.mark.parametrize("feature_channels, num_samples, rays, anti_alias_pooling", [
    (32, 64, 5, True),  # P = 320: ten full tiles
    (32, 24, 3, False),  # P = 72: a ragged last tile, plain mask pooling
    (16, 7, 1, True),  # P = 7: one partial tile, 19 input channels
])
def test_kernel_equals_the_pytorch_path(feature_channels, num_samples, rays, anti_alias_pooling):
    aggregator = _aggregator(feature_channels, num_samples, anti_alias_pooling)
    inputs = _inputs(rays, num_samples, 9, 3 + feature_channels)
    (rgb, sigma), (rgb_reference, sigma_reference) = _both_paths(aggregator, *inputs)
    assert rgb.shape == rgb_reference.shape and sigma.shape == sigma_reference.shape
    torch.testing.assert_close(rgb, rgb_reference, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(sigma, sigma_reference, atol=2e-6, rtol=1e-5)
    assert sigma[0, 0] == 0.0  # a sample no view sees has no density, as in the PyTorch path


def test_kernel_equals_the_pytorch_path_where_exp_saturates():
    """Inputs 100x larger: ELU, sigmoid and the softmax over views see arguments far outside [-87, 88]."""
    aggregator = _aggregator(32, 16, True, seed=3)
    with torch.no_grad():
        for module in aggregator.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(4.0)
    (rgb, sigma), (rgb_reference, sigma_reference) = _both_paths(aggregator, *_inputs(4, 16, 6, 35, scale=100.0))
    assert torch.isfinite(rgb).all() and torch.isfinite(sigma).all()
    torch.testing.assert_close(rgb, rgb_reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sigma, sigma_reference, atol=1e-4, rtol=1e-4)


def test_a_nan_weight_gives_nan_as_in_the_pytorch_path():
    aggregator = _aggregator(32, 8, True)
    with torch.no_grad():
        aggregator.base_fc[2].weight[0, 0] = float("nan")
    (rgb, sigma), (rgb_reference, sigma_reference) = _both_paths(aggregator, *_inputs(2, 8, 5, 35))
    assert torch.equal(torch.isnan(rgb), torch.isnan(rgb_reference)) and torch.isnan(rgb).any()
    assert torch.equal(torch.isnan(sigma), torch.isnan(sigma_reference))


def test_the_kernel_runs_only_without_autograd(monkeypatch):
    calls = []
    aggregate = aggregator_native.aggregate
    monkeypatch.setattr(aggregator_native, "aggregate", lambda *args: calls.append(1) or aggregate(*args))
    aggregator = _aggregator(32, 8, True)
    inputs = _inputs(2, 8, 5, 35)
    rgb, sigma = aggregator(*inputs)  # training: PyTorch path, differentiable
    (rgb.sum() + sigma.sum()).backward()
    assert not calls and aggregator.base_fc[0].weight.grad is not None
    with torch.no_grad():
        aggregator(*inputs)
        aggregator.double()(*(t.double() if t.is_floating_point() else t for t in inputs))  # float64: PyTorch
    assert calls == [1]


def test_projecting_in_the_kernel_equals_the_projector_and_the_aggregator():
    """render_points against project_to_sources + the PyTorch aggregator, with samples behind source cameras,
    outside their images and on image borders (where bilinear sampling drops corners)."""
    torch.manual_seed(0)
    V, H, W, R, S = 5, 32, 40, 6, 24
    sources, rays = _toy_setup(V=V, H=H, W=W, R=R)
    features = torch.randn(V, 16, 9, 11)  # not 1/4 of the image: the same normalised grid samples both
    depths = torch.linspace(-1.0, 9.0, S).expand(R, S)  # from behind the cameras to far beyond the scene
    points = rays.origins[:, None] + depths[..., None] * rays.directions[:, None]
    # in view 0 (f = 40, centre (19.5, 15.5), at x = -0.3): u = -0.5 and 39.5 (outside, two corners inside the
    # image), u = 38.7 (inside, next to the border); v = -0.5 (two corners inside) and (u, v) = (39.5, 31.5)
    # (one corner inside) lie outside every view (they differ in x only): such samples blend all views'
    # colours uniformly, so the corners sampled there reach the output
    points[0, :5] = torch.tensor([[-0.8, 0.0, 1.0], [0.2, 0.0, 1.0], [0.18, 0.0, 1.0], [-0.3, -0.4, 1.0],
                                  [0.2, 0.4, 1.0]])
    aggregator = _aggregator(16, S, True)
    center = torch.tensor([0.05, -0.02, 0.0])
    cameras = (sources.images, features, sources.K, sources.cam_from_world, sources.world_from_cam)
    with torch.no_grad():
        rgb, sigma, num_views = aggregator_native.render_points(aggregator, points, center, *cameras)
        projection = project_to_sources(points, center, *cameras)
        # the reference in float64: float32 rounding in the projection (pixel positions, unit vectors of
        # nearly parallel directions) moves both float32 paths by up to about 1e-5 on these noisy images
        reference = aggregator.double()
        projection64 = project_to_sources(points.double(), center.double(), *(c.double() for c in cameras))
        rgb_reference, sigma_reference = reference(projection64.rgb_feat, projection64.ray_diff, projection64.mask,
                                                   projection64.colours)
    assert torch.equal(num_views, projection.mask.sum(dim=-1).float())
    assert torch.equal(projection.mask, projection64.mask)
    assert 0 < num_views.mean() < V and (num_views == 0).any()  # the test covers seen and unseen samples
    torch.testing.assert_close(rgb.double(), rgb_reference, atol=3e-5, rtol=1e-4)
    torch.testing.assert_close(sigma.double(), sigma_reference, atol=3e-5, rtol=1e-4)


def test_model_renders_the_same_image_with_and_without_the_kernel():
    torch.manual_seed(0)
    model = IBRNet(num_coarse_samples=16, num_fine_samples=8, max_points_per_pass=5 * 16).eval()
    sources, rays = _toy_setup(R=23)
    center = torch.zeros(3)
    outputs = []
    with torch.no_grad():
        features = model.encode(sources.images)
        for native in (True, False):
            for net in (model.net_coarse, model.net_fine):
                net.native_cpu_kernel = native
            outputs.append(model(rays, sources, features, center, deterministic=True))
    native, reference = outputs
    for a, b in ((native.coarse, reference.coarse), (native.fine, reference.fine)):
        torch.testing.assert_close(a.rgb, b.rgb, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.depth, b.depth, atol=1e-4, rtol=1e-5)
        assert torch.equal(a.valid, b.valid)


def test_without_a_compiler_it_warns_once_and_renders_with_pytorch(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("MVPRETRAIN_NATIVE_CACHE", str(tmp_path / "cache"))
    aggregator_native._kernel.cache_clear()
    aggregator_native.available.cache_clear()
    try:
        aggregator = _aggregator(32, 8, True)
        inputs = _inputs(2, 8, 5, 35)
        with pytest.warns(RuntimeWarning, match="(?s)no-such-compiler.*PyTorch path"):
            with torch.no_grad():
                rgb, _ = aggregator(*inputs)
        aggregator.native_cpu_kernel = False
        with torch.no_grad():
            torch.testing.assert_close(rgb, aggregator(*inputs)[0], atol=0, rtol=0)
    finally:
        aggregator_native._kernel.cache_clear()
        aggregator_native.available.cache_clear()
    assert not list((tmp_path / "cache").glob("*.so"))
    assert native_library.cache_directory() == tmp_path / "cache"
