"""MVSNet: the original's parameters, the cost volume against naive references (values and gradients), depth
regression and confidence known answers, a textured plane through the whole network, input errors, dtypes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from jdacs.mvsnet import (
    CostRegNet,
    FeatureNet,
    MVSNet,
    _conv_to_one_channel,
    build_cost_volume,
    cost_volume_conv3d,
    depth_regression,
    photometric_confidence,
)
from multiview.geometry.warping import plane_sweep_warp

F64 = torch.float64


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_original():
    assert _count(FeatureNet()) == 40_120
    assert _count(CostRegNet()) == 298_009
    assert _count(MVSNet()) == 338_129
    assert _count(MVSNet(refine=True)) == 358_195


def test_parameter_names_are_the_originals():
    names = set(MVSNet(refine=True).state_dict())
    for name in ("feature.conv0.conv.weight", "feature.conv6.bn.running_var", "feature.feature.bias",
                 "cost_regularization.conv0.conv.weight", "cost_regularization.conv7.0.weight",
                 "cost_regularization.conv11.1.running_mean", "cost_regularization.prob.bias",
                 "refine_network.res.bn.weight"):
        assert name in names
    assert not any(name.endswith(".conv.bias") for name in names)  # ConvBnReLU convolutions have no bias


def _sweep_inputs(B=2, S=2, C=3, H=6, W=10, D=5, src_size=(7, 11), seed=0):
    """Random float64 features and two source cameras (rotated and shifted) looking at depths 2..4."""
    generator = torch.Generator().manual_seed(seed)
    ref = torch.randn(B, C, H, W, generator=generator, dtype=F64)
    src = torch.randn(B, S, C, *src_size, generator=generator, dtype=F64)
    K_ref = torch.tensor([[8.0, 0, (W - 1) / 2], [0, 8.0, (H - 1) / 2], [0, 0, 1]], dtype=F64).expand(B, 3, 3)
    K_src = torch.tensor([[9.0, 0, src_size[1] / 2], [0, 9.0, src_size[0] / 2], [0, 0, 1]], dtype=F64)
    K_src = K_src.expand(B, S, 3, 3)
    angle = torch.tensor(0.1, dtype=F64)
    src_from_ref = torch.eye(4, dtype=F64).repeat(B, S, 1, 1)
    src_from_ref[:, 0, 0, 0] = src_from_ref[:, 0, 2, 2] = torch.cos(angle)
    src_from_ref[:, 0, 0, 2], src_from_ref[:, 0, 2, 0] = torch.sin(angle), -torch.sin(angle)
    src_from_ref[:, 0, :3, 3] = torch.tensor([-0.4, 0.1, 0.05], dtype=F64)
    src_from_ref[:, 1, :3, 3] = torch.tensor([0.3, -0.2, 0.0], dtype=F64)
    depth_values = torch.linspace(2.0, 4.0, D, dtype=F64).expand(B, D) + torch.arange(B, dtype=F64)[:, None] * 0.1
    return ref, src, K_ref, K_src, src_from_ref, depth_values


def _naive_variance(ref, src, K_ref, K_src, src_from_ref, depth_values):
    """All V volumes stacked (the reference repeated over D), population variance over the views."""
    B, C, H, W = ref.shape
    D = depth_values.shape[1]
    hypotheses = depth_values[:, :, None, None].expand(B, D, H, W)
    volumes = [ref.unsqueeze(2).expand(B, C, D, H, W)]
    volumes += [plane_sweep_warp(src[:, s], hypotheses, K_ref, K_src[:, s], src_from_ref[:, s])[0]
                for s in range(src.shape[1])]
    return torch.stack(volumes, dim=1).var(dim=1, unbiased=False)


@pytest.mark.parametrize("height", [6, 8])  # 2 and 8 row bands of the warp
def test_variance_volume_equals_the_naive_formula(height):
    inputs = _sweep_inputs(H=height)
    expected = _naive_variance(*inputs)
    assert expected.abs().max() > 0.1
    with torch.no_grad():  # in-place streaming
        torch.testing.assert_close(build_cost_volume(*inputs), expected, atol=1e-12, rtol=0)
    ref, src = (t.clone().requires_grad_() for t in inputs[:2])  # plain autograd
    torch.testing.assert_close(build_cost_volume(ref, src, *inputs[2:]), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("slab_bytes", [1, 20_000, 2**30])  # one plane per slab, a few slabs, one slab
def test_slab_variance_convolution_equals_autograd_through_the_naive_volume(slab_bytes):
    ref, src, *geometry = _sweep_inputs()
    weight = torch.randn(4, ref.shape[1], 3, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    leaves = [t.clone().requires_grad_() for t in (weight, ref, src)]
    expected = F.conv3d(_naive_variance(leaves[1], leaves[2], *geometry), leaves[0], padding=1)
    output = cost_volume_conv3d(leaves[1], leaves[2], *geometry, leaves[0], slab_bytes=slab_bytes)
    torch.testing.assert_close(output, expected, atol=1e-12, rtol=0)
    grad_output = torch.randn(expected.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
    expected_grads = torch.autograd.grad(expected, leaves, grad_output)
    for grad, expected_grad in zip(torch.autograd.grad(output, leaves, grad_output), expected_grads):
        assert expected_grad.abs().max() > 1e-3
        torch.testing.assert_close(grad, expected_grad, atol=1e-10, rtol=1e-10)


def test_regression_of_a_one_hot_volume_returns_that_depth():
    B, D, H, W = 2, 8, 3, 4
    depth_values = torch.rand(B, D, dtype=F64).sort(dim=1).values * 100 + 400
    index = torch.randint(0, D, (B, H, W))
    prob = F.one_hot(index, D).permute(0, 3, 1, 2).to(F64)
    expected = torch.gather(depth_values[:, :, None, None].expand(B, D, H, W), 1, index[:, None]).squeeze(1)
    torch.testing.assert_close(depth_regression(prob, depth_values), expected, atol=1e-12, rtol=0)


def test_confidence_is_one_for_a_one_hot_volume_and_4_over_D_for_a_uniform_one():
    B, D, H, W = 2, 16, 3, 4
    prob = F.one_hot(torch.randint(0, D, (B, H, W)), D).permute(0, 3, 1, 2).to(F64)
    torch.testing.assert_close(photometric_confidence(prob), torch.ones(B, H, W, dtype=F64))
    uniform = torch.full((B, D, H, W), 1 / D, dtype=F64)  # expected index 7.5 -> 7: window 6..9 inside
    torch.testing.assert_close(photometric_confidence(uniform), torch.full((B, H, W), 4 / D, dtype=F64))


class _RecordingCost(nn.Module):
    """Stand-in 3D network: cost = −10⁶·mean over channels of the variance (the softmax picks its minimum)."""

    def forward(self, volume):
        self.volume = volume
        return -1e6 * volume.mean(1, keepdim=True)


def test_a_textured_plane_is_found_at_its_depth_through_the_network():
    """Plane z = 10 in front of three cameras shifted along x by 0, +4, −8 (f = 20 px): disparities 8 and −16 image
    px = 2 and −4 feature px (features: 4x4 average pooling). At hypothesis 10 the warped sources equal the
    reference (zero variance), and the depth comes out as 10."""
    H, W, f, plane_depth = 32, 96, 20.0, 10.0
    shifts = torch.tensor([0.0, 4.0, -8.0], dtype=F64)
    K = torch.tensor([[f, 0, 47.5], [0, f, 15.5], [0, 0, 1]], dtype=F64).expand(1, 3, 3, 3)
    cam_from_world = torch.eye(4, dtype=F64).repeat(1, 3, 1, 1)
    cam_from_world[0, :, 0, 3] = -shifts
    v, u = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    x = shifts[:, None, None] + (u - 47.5) * plane_depth / f  # plane coordinates seen by each view's pixels
    y = ((v - 15.5) * plane_depth / f).expand_as(x)
    texture = torch.stack([torch.sin(1.3 * x + 0.4 * y), torch.cos(0.7 * x - 1.1 * y), torch.sin(0.5 * x * y)], 1)
    depth_values = torch.arange(6.0, 14.0, dtype=F64)[None]
    model = MVSNet(checkpoint_cost_volume=False).double()
    model.feature, model.cost_regularization = nn.AvgPool2d(4), _RecordingCost()
    out = model(texture[None], K, cam_from_world, depth_values)
    variance = model.cost_regularization.volume  # (1, 3, D, 8, 24); both warps inside for columns 2..19
    at_plane = list(depth_values[0]).index(plane_depth)
    assert variance[0, :, at_plane, :, 2:20].abs().max() < 1e-12
    others = torch.cat([variance[0, :, :at_plane, :, 2:20], variance[0, :, at_plane + 1:, :, 2:20]], 1)
    assert others.mean(0).amin() > 1e-3
    torch.testing.assert_close(out.depth[0, :, 2:20], torch.full((8, 18), plane_depth, dtype=F64))


def _scene(B=1, V=3, H=32, W=64, D=8, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(B, V, 3, H, W, generator=generator).to(dtype)
    K = torch.tensor([[40.0, 0, (W - 1) / 2], [0, 40.0, (H - 1) / 2], [0, 0, 1]], dtype=dtype).expand(B, V, 3, 3)
    cam_from_world = torch.eye(4, dtype=dtype).repeat(B, V, 1, 1)
    cam_from_world[:, :, 0, 3] = torch.linspace(-0.2, 0.2, V, dtype=dtype)
    depth_values = torch.linspace(2.0, 5.0, D, dtype=dtype).expand(B, D)
    return images, K, cam_from_world, depth_values


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = MVSNet(refine=True)
    out = model(*_scene())
    target = torch.full_like(out.depth, 3.0)
    (F.smooth_l1_loss(out.depth, target) + F.smooth_l1_loss(out.refined_depth, target)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        if name == "cost_regularization.prob.bias":  # the softmax over D ignores a constant added to every cost
            assert parameter.grad.abs().max() < 1e-6
        else:
            assert parameter.grad.abs().max() > 0, name


@pytest.mark.parametrize("depth, height", [(4, 4), (48, 64)])  # N·C·D·H 128: the depthwise path; 24576: plain conv3d
def test_single_output_convolution_equals_conv3d_in_values_and_gradients(depth, height):
    torch.manual_seed(0)
    conv = nn.Conv3d(8, 1, 3, padding=1).double()
    x = torch.randn(1, 8, depth, height, 8, dtype=F64, requires_grad=True)
    out = _conv_to_one_channel(conv, x)
    expected = F.conv3d(x, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, conv.weight, conv.bias), upstream)
    expected_grads = torch.autograd.grad(expected, (x, conv.weight, conv.bias), upstream)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-10, rtol=0)


def test_checkpointed_cost_volume_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    recomputing = MVSNet(checkpoint_cost_volume=True).double()
    storing = copy.deepcopy(recomputing)
    storing.checkpoint_cost_volume = False
    inputs = _scene(dtype=F64)
    outputs = [model(*inputs) for model in (recomputing, storing)]
    torch.testing.assert_close(outputs[0].prob_volume, outputs[1].prob_volume, atol=1e-12, rtol=0)
    torch.testing.assert_close(outputs[0].confidence, outputs[1].confidence, atol=1e-12, rtol=0)
    for out in outputs:
        out.depth.square().mean().backward()
    for (name, a), b in zip(recomputing.named_parameters(), storing.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-9, rtol=1e-9, msg=name)
    for model in (recomputing, storing):
        model.eval()
    with torch.no_grad():  # inference: in-place streaming in both paths
        depths = [model(*inputs).depth for model in (recomputing, storing)]
    torch.testing.assert_close(depths[0], depths[1], atol=1e-12, rtol=0)


def test_feature_batchnorm_sees_one_view_at_a_time_like_the_original():
    """The original calls FeatureNet once per view: batch statistics (and running averages) are per view."""
    torch.manual_seed(0)
    model = MVSNet()
    reference = copy.deepcopy(model.feature)
    images, *cameras = _scene()
    model(images, *cameras)
    for view in range(images.shape[1]):
        reference(images[:, view])
    for name, expected in reference.state_dict().items():
        torch.testing.assert_close(model.feature.state_dict()[name], expected, msg=name)


def test_refinement_residual_is_never_negative():
    torch.manual_seed(0)
    out = MVSNet(refine=True)(*_scene())
    assert out.refined_depth.shape == out.depth.shape
    assert (out.refined_depth >= out.depth).all() and (out.refined_depth > out.depth).any()


class _MustNotRun(nn.Module):
    def forward(self, x):
        raise AssertionError("the network ran before its inputs were checked")


@pytest.mark.parametrize("size, D, message", [((32, 64), 12, "D = 12"), ((48, 64), 8, "H/4 = 12"),
                                              ((32, 40), 8, r"W/4 = 10\b")])
def test_sizes_the_3d_unet_cannot_halve_three_times_raise_before_any_computation(size, D, message):
    model = MVSNet()
    model.feature = _MustNotRun()
    with pytest.raises(ValueError, match=message):
        model(*_scene(H=size[0], W=size[1], D=D))


def test_wrong_camera_shapes_raise_with_expected_and_received_shapes():
    images, K, cam_from_world, depth_values = _scene()
    with pytest.raises(ValueError, match=r"K must have shape \(1, 3, 3, 3\), got \(1, 2, 3, 3\)"):
        MVSNet()(images, K[:, :2], cam_from_world, depth_values)
    with pytest.raises(ValueError, match=r"depth_values must be \(1, D\)"):
        MVSNet()(images, K, cam_from_world, depth_values[0])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_outputs_follow_the_inputs_dtype_and_device(dtype, device):
    model = MVSNet().to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        out = model(*(t.to(device) for t in _scene(dtype=dtype)))
    for tensor in (out.depth, out.confidence, out.prob_volume):
        assert tensor.dtype == dtype and tensor.device.type == device
    assert out.depth.shape == (1, 8, 16) and out.prob_volume.shape == (1, 8, 8, 16)
    assert torch.isfinite(out.depth).all() and ((out.confidence >= 0) & (out.confidence <= 1 + 1e-5)).all()
