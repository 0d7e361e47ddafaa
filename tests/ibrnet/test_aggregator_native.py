"""The compiled aggregator kernel against the aggregator's PyTorch path (same math, float32, no autograd)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ibrnet import aggregator_native
from ibrnet.aggregator import IBRNetAggregator
from ibrnet.model import IBRNet, Rays, Sources
from ibrnet.projector import project_to_sources
from multiview.data.readers.llff import read_llff_scene
from multiview.engine import native_library
from multiview.geometry.intrinsics import scale_intrinsics
from multiview.geometry.projection import rays_through_pixels
from multiview.io.images import read_image
from tests.ibrnet.test_model import _toy_setup

FERN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "llff" / "fern"


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


def test_which_kernel_runs_when(monkeypatch):
    """No autograd: the whole aggregator in C; autograd: the per-view layers in C with their backward pass;
    float64, or ray differences that want a gradient: PyTorch."""
    calls = []
    for name in ("aggregate", "per_view_layers"):
        function = getattr(aggregator_native, name)
        monkeypatch.setattr(aggregator_native, name,
                            lambda *args, _name=name, _function=function: calls.append(_name) or _function(*args))
    aggregator = _aggregator(32, 8, True)
    rgb_feat, ray_diff, mask = _inputs(2, 8, 5, 35)
    rgb, sigma = aggregator(rgb_feat, ray_diff, mask)
    (rgb.sum() + sigma.sum()).backward()
    assert calls == ["per_view_layers"] and aggregator.base_fc[0].weight.grad is not None
    with torch.no_grad():
        aggregator(rgb_feat, ray_diff, mask)
    assert calls == ["per_view_layers", "aggregate"]
    aggregator(rgb_feat, ray_diff.clone().requires_grad_(True), mask)
    with torch.no_grad():
        aggregator.double()(rgb_feat.double(), ray_diff.double(), mask)
    aggregator.double()(rgb_feat.double(), ray_diff.double(), mask)
    assert calls == ["per_view_layers", "aggregate"]


def _live_aggregator(feature_channels: int, num_samples: int, anti_alias_pooling: bool, seed: int = 0):
    """`_aggregator` with a density head whose final ReLU is active, so that the density passes gradients."""
    aggregator = _aggregator(feature_channels, num_samples, anti_alias_pooling, seed)
    with torch.no_grad():
        aggregator.out_geometry_fc[2].bias.fill_(3.0)
    return aggregator


def _outputs_and_gradients(aggregator, rgb_feat, ray_diff, mask, native: bool):
    """rgb, sigma and the gradients of a fixed random linear function of them with respect to the features,
    the blended colours and every parameter, by the C kernels (native) or by autograd of the PyTorch path."""
    aggregator.native_cpu_kernel = native
    aggregator.zero_grad(set_to_none=True)
    features = rgb_feat.detach().clone().requires_grad_(True)
    colours = rgb_feat[..., :3].detach().clone().requires_grad_(True)
    rgb, sigma = aggregator(features, ray_diff, mask, colours)
    generator = torch.Generator().manual_seed(3)
    loss = (rgb * torch.randn(rgb.shape, generator=generator)).sum()
    (loss + (sigma * torch.randn(sigma.shape, generator=generator)).sum()).backward()
    gradients = {"features": features.grad, "colours": colours.grad}
    gradients |= {name: parameter.grad for name, parameter in aggregator.named_parameters()}
    return rgb.detach(), sigma.detach(), gradients


def _assert_same_gradients(aggregator, inputs, atol=2e-6):
    rgb, sigma, gradients = _outputs_and_gradients(aggregator, *inputs, native=True)
    rgb_reference, sigma_reference, reference = _outputs_and_gradients(aggregator, *inputs, native=False)
    torch.testing.assert_close(rgb, rgb_reference, atol=atol, rtol=1e-5)
    torch.testing.assert_close(sigma, sigma_reference, atol=atol, rtol=1e-5)
    assert reference["geometry_fc.0.weight"].abs().sum() > 0  # the density's gradient reaches the pooled input
    for name, expected in reference.items():
        if expected is None:  # s without anti-alias pooling
            assert gradients[name] is None
            continue
        if name == "rgb_fc.4.bias":  # a shift of every view's blend logit: the softmax ignores it, ∂ = 0
            assert gradients[name].abs().max() < 1e-5 and expected.abs().max() < 1e-5
            continue
        scale = expected.abs().max()
        assert scale > 0, name
        torch.testing.assert_close(gradients[name], expected, atol=1e-4 * scale, rtol=1e-4, msg=name)


@pytest.mark.parametrize("feature_channels, num_samples, rays, anti_alias_pooling", [
    (32, 64, 5, True),  # P = 320: ten full tiles
    (32, 24, 3, False),  # P = 72: a ragged last tile, plain mask pooling
    (16, 7, 1, True),  # P = 7: one partial tile, 19 input channels
])
def test_training_kernels_give_the_gradients_of_the_pytorch_path(feature_channels, num_samples, rays,
                                                                   anti_alias_pooling):
    """The per-view layers' forward and backward kernels against autograd of the PyTorch path: outputs and the
    gradients of the features, colours and every parameter (s and those behind the pooled statistics too)."""
    aggregator = _live_aggregator(feature_channels, num_samples, anti_alias_pooling)
    _assert_same_gradients(aggregator, _inputs(rays, num_samples, 9, 3 + feature_channels))


def test_training_kernels_stay_finite_where_exp_saturates():
    """Inputs 100x larger and weights 4x: ELU and sigmoid saturate (their derivatives vanish, exp overflows
    in the discarded branch). Both paths' gradients are then huge and ill-conditioned in float32 (they
    differ by orders of magnitude), so only finiteness is compared: no inf·0 = NaN in the kernels."""
    aggregator = _live_aggregator(32, 16, True, seed=3)
    with torch.no_grad():
        for module in aggregator.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(4.0)
    inputs = _inputs(4, 16, 6, 35, scale=100.0)
    _, _, gradients = _outputs_and_gradients(aggregator, *inputs, native=True)
    _, _, reference = _outputs_and_gradients(aggregator, *inputs, native=False)
    for name, expected in reference.items():
        assert torch.isfinite(expected).all() and torch.isfinite(gradients[name]).all(), name


def test_training_kernels_split_the_samples_over_threads_without_changing_the_gradients():
    """Each thread accumulates its own parameter gradients over its tiles; the sum must not depend on the split."""
    aggregator = _live_aggregator(32, 40, True)
    inputs = _inputs(3, 40, 5, 35)  # P = 120: three ranges of 32, 32 and 56 samples on three threads
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, _, one = _outputs_and_gradients(aggregator, *inputs, native=True)
        torch.set_num_threads(3)
        assert len(aggregator_native._sample_ranges(120)) == 3
        _, _, three = _outputs_and_gradients(aggregator, *inputs, native=True)
    finally:
        torch.set_num_threads(threads)
    largest = max(gradient.abs().max() for gradient in one.values())
    for name, expected in one.items():
        torch.testing.assert_close(three[name], expected, atol=1e-6 * largest, rtol=1e-5, msg=name)


def test_a_second_backward_pass_through_the_training_kernels_is_a_clear_error():
    """The forward kernel's kept activations are freed by the backward pass (retain_graph is not supported)."""
    aggregator = _live_aggregator(32, 8, True)
    rgb, sigma = aggregator(*_inputs(2, 8, 5, 35))
    loss = rgb.sum() + sigma.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="a second time.*--no-native_cpu_kernel"):
        loss.backward()


def test_training_from_points_gives_the_gradients_of_the_projector_and_the_pytorch_path():
    """forward_from_points (projection and bilinear sampling in the kernels, their backward scattering into the
    feature maps) against project_to_sources + the PyTorch path in float64 (float32 rounding of pixel positions
    moves both float32 paths by about 1e-5, see the rendering test): outputs, the feature maps' gradient and
    every parameter's, with samples behind the cameras, outside the images and next to their borders."""
    torch.manual_seed(0)
    V, H, W, R, S = 5, 32, 40, 6, 24
    sources, rays = _toy_setup(V=V, H=H, W=W, R=R)
    depths = torch.linspace(-1.0, 9.0, S).expand(R, S)
    points = rays.origins[:, None] + depths[..., None] * rays.directions[:, None]
    points[0, :5] = torch.tensor([[-0.8, 0.0, 1.0], [0.2, 0.0, 1.0], [0.18, 0.0, 1.0], [-0.3, -0.4, 1.0],
                                  [0.2, 0.4, 1.0]])  # on and beside view 0's borders (see the rendering test)
    center = torch.tensor([0.05, -0.02, 0.0])
    aggregator = _live_aggregator(16, S, True)
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(V, 16, 9, 11, generator=generator)
    weights = torch.randn(R, S, 3, generator=generator), torch.randn(R, S, generator=generator)
    cameras = (sources.K, sources.cam_from_world, sources.world_from_cam)

    def gradients(native: bool):
        dtype = torch.float32 if native else torch.float64
        net = aggregator.to(dtype)
        net.zero_grad(set_to_none=True)
        maps = features.to(dtype).clone().requires_grad_(True)
        if native:
            rgb, sigma, num_views = net.forward_from_points(points, center, sources.images, maps, *cameras)
        else:
            projection = project_to_sources(points.double(), center.double(), sources.images.double(), maps,
                                            *(c.double() for c in cameras))
            rgb, sigma = net(projection.rgb_feat, projection.ray_diff, projection.mask, projection.colours)
            num_views = projection.mask.sum(dim=-1)
        ((rgb * weights[0].to(dtype)).sum() + (sigma * weights[1].to(dtype)).sum()).backward()
        found = {"features": maps.grad} | {name: p.grad for name, p in net.named_parameters()}
        return rgb.detach().double(), sigma.detach().double(), num_views.double(), found

    rgb, sigma, num_views, found = gradients(native=True)
    rgb_reference, sigma_reference, num_views_reference, reference = gradients(native=False)
    assert torch.equal(num_views, num_views_reference) and (num_views == 0).any() and (num_views == V).any()
    torch.testing.assert_close(rgb, rgb_reference, atol=3e-5, rtol=1e-4)
    torch.testing.assert_close(sigma, sigma_reference, atol=3e-5, rtol=1e-4)
    assert reference["features"].abs().sum() > 0 and reference["geometry_fc.0.weight"].abs().sum() > 0
    for name, expected in reference.items():
        if name == "rgb_fc.4.bias":  # ∂ = 0: the softmax over views ignores a common shift
            continue
        # s's gradient is a small sum of cancelling terms: in float32 it is off by ~0.6 % on the arrays path too
        scale = expected.abs().max() * (30.0 if name == "s" else 1.0)
        torch.testing.assert_close(found[name].double(), expected, atol=3e-4 * scale, rtol=1e-3, msg=name)


def test_a_sample_count_other_than_the_encodings_is_a_clear_error_on_every_path():
    aggregator = _aggregator(16, 8, True)
    sources, rays = _toy_setup(V=3)
    points = rays.origins[:, None] + torch.linspace(2.0, 6.0, 6)[:, None] * rays.directions[:, None]  # S = 6
    features = torch.randn(3, 16, 8, 10, requires_grad=True)
    with pytest.raises(ValueError, match="built for 8 samples per ray.*got 6"):
        aggregator.forward_from_points(points, torch.zeros(3), sources.images, features, sources.K,
                                       sources.cam_from_world, sources.world_from_cam)
    with pytest.raises(ValueError, match="built for 8 samples per ray.*got 6"):
        aggregator(*_inputs(2, 6, 3, 19))


def test_model_trains_with_the_same_gradients_with_and_without_the_kernels():
    """A whole training forward/backward pass (coarse and fine nets, sampling, compositing) through the model:
    the feature net's gradients, which come through the projected features, agree."""
    sources, rays = _toy_setup(R=23)
    center = torch.zeros(3)
    results = []
    for native in (True, False):
        torch.manual_seed(0)
        model = IBRNet(num_coarse_samples=16, num_fine_samples=8, native_cpu_kernel=native)
        output = model(rays, sources, model.encode(sources.images), center,
                       generator=torch.Generator().manual_seed(1))  # the same stratified and fine samples
        (output.coarse.rgb.square().mean() + output.fine.rgb.square().mean()).backward()
        results.append(({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None},
                        output.fine.rgb.detach()))
    (gradients, rgb), (reference, rgb_reference) = results
    torch.testing.assert_close(rgb, rgb_reference, atol=1e-5, rtol=1e-5)
    assert gradients.keys() == reference.keys() and any(name.startswith("feature_net.") for name in reference)
    largest = max(gradient.abs().max() for gradient in reference.values())
    for name, expected in reference.items():  # (the biases before InstanceNorms have gradients near 0)
        torch.testing.assert_close(gradients[name], expected, atol=1e-4 * expected.abs().max() + 1e-6 * largest,
                                   rtol=1e-4, msg=name)


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


@pytest.mark.skipif(not FERN.is_dir(), reason=f"real LLFF sample {FERN} is absent")
def test_training_on_the_real_llff_sample_matches_the_pytorch_path():
    """Real cameras and images (LLFF fern, images_8 resized to 189x252, ../shared/data): one training step of
    the model through the C kernels and through the PyTorch path give the same loss and gradients."""
    scene = read_llff_scene(FERN, factor=8)
    target, views = scene.views[0], scene.views[1:4]
    images = torch.stack([torch.from_numpy(read_image(v.image_path)).permute(2, 0, 1).float() for v in views])
    images = torch.nn.functional.interpolate(images, scale_factor=0.5, mode="area")  # a faster feature net
    K = torch.tensor(np.stack([scale_intrinsics(v.K, 0.5, 0.5) for v in views])).float()
    sources = Sources(images, K, torch.tensor(np.stack([v.cam_from_world for v in views])).float())
    world_from_target = torch.linalg.inv(torch.tensor(target.cam_from_world)).float()
    pixels = torch.randperm(target.height * target.width, generator=torch.Generator().manual_seed(0))[:64]
    uv = torch.stack([pixels % target.width, pixels // target.width], dim=-1).float()
    origins, directions = rays_through_pixels(uv[None], torch.tensor(target.K).float()[None], world_from_target[None])
    rays = Rays(origins[0], directions[0], torch.full((64,), target.near), torch.full((64,), target.far))
    colours = torch.from_numpy(read_image(target.image_path)).float().reshape(-1, 3)[pixels]
    results = []
    for native in (True, False):
        torch.manual_seed(0)
        model = IBRNet(num_coarse_samples=16, num_fine_samples=16, native_cpu_kernel=native)
        output = model(rays, sources, model.encode(sources.images), world_from_target[:3, 3],
                       generator=torch.Generator().manual_seed(1))
        loss = (output.coarse.rgb - colours).square().mean() + (output.fine.rgb - colours).square().mean()
        loss.backward()
        results.append((loss.item(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}))
    (loss, gradients), (loss_reference, reference) = results
    assert loss == pytest.approx(loss_reference, rel=1e-5)
    assert gradients.keys() == reference.keys()
    largest = max(gradient.abs().max() for gradient in reference.values())
    for name, expected in reference.items():  # s: a small sum of cancelling terms, see the test above
        scale = expected.abs().max() * (30.0 if name.endswith(".s") else 1.0)
        torch.testing.assert_close(gradients[name], expected, atol=1e-3 * scale + 1e-6 * largest, rtol=1e-3,
                                   msg=name)
