"""Our fast IBRNet aggregator and projector compute the original's math.

`original_aggregator_forward` below re-states the original release's `IBRNet.forward`
(ibrnet/mlp_network.py, see reference/ibrnet.md §3) line by line — (R, S, V, ·) tensors, expand + cat of
the global features, `fused_mean_variance`, the MultiHeadAttention with its mask broadcast over the key
axis (masked query rows), the concatenated rgb_fc input — on the parameters of our module. Ours
(view-major layout, split first layers, in-place activations, a hand-written mean/variance backward,
SDPA) must give the same outputs and the same gradients in float64.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ibrnet.aggregator import IBRNetAggregator, weighted_mean_variance
from ibrnet.projector import project_to_sources, ray_direction_difference

TOLERANCE = dict(atol=1e-10, rtol=1e-10)


def original_positional_encoding(d_hid: int, n_samples: int) -> torch.Tensor:
    angles = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)] for pos in range(n_samples)])
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.from_numpy(angles).float().unsqueeze(0)


def original_fused_mean_variance(x, weight):
    mean = torch.sum(x * weight, dim=2, keepdim=True)
    var = torch.sum(weight * (x - mean) ** 2, dim=2, keepdim=True)
    return mean, var


def original_multi_head_attention(attention, q, k, v, mask):
    d_k = d_v = 4
    n_head = 4
    sz_b, len_q, len_k, len_v = q.size(0), q.size(1), k.size(1), v.size(1)
    residual = q
    q = attention.w_qs(q).view(sz_b, len_q, n_head, d_k)
    k = attention.w_ks(k).view(sz_b, len_k, n_head, d_k)
    v = attention.w_vs(v).view(sz_b, len_v, n_head, d_v)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    mask = mask.unsqueeze(1)  # (R, 1, S, 1): broadcast over the key axis
    attn = torch.matmul(q / d_k**0.5, k.transpose(2, 3))
    attn = attn.masked_fill(mask == 0, -1e9)
    attn = F.softmax(attn, dim=-1)
    q = torch.matmul(attn, v)
    q = q.transpose(1, 2).contiguous().view(sz_b, len_q, -1)
    q = attention.fc(q)
    q = q + residual
    return attention.layer_norm(q)


def original_aggregator_forward(net: IBRNetAggregator, rgb_feat, ray_diff, mask, pos_encoding):
    """The original forward; mask (R, S, V, 1) float. Returns (R, S, 4) = (rgb, sigma)."""
    num_views = rgb_feat.shape[2]
    direction_feat = net.ray_dir_fc(ray_diff)
    rgb_in = rgb_feat[..., :3]
    rgb_feat = rgb_feat + direction_feat
    if net.anti_alias_pooling:
        _, dot_prod = torch.split(ray_diff, [3, 1], dim=-1)
        exp_dot_prod = torch.exp(torch.abs(net.s) * (dot_prod - 1))
        weight = (exp_dot_prod - torch.min(exp_dot_prod, dim=2, keepdim=True)[0]) * mask
        weight = weight / (torch.sum(weight, dim=2, keepdim=True) + 1e-8)
    else:
        weight = mask / (torch.sum(mask, dim=2, keepdim=True) + 1e-8)

    mean, var = original_fused_mean_variance(rgb_feat, weight)
    globalfeat = torch.cat([mean, var], dim=-1)
    x = torch.cat([globalfeat.expand(-1, -1, num_views, -1), rgb_feat], dim=-1)
    x = net.base_fc(x)

    x_vis = net.vis_fc(x * weight)
    x_res, vis = torch.split(x_vis, [x_vis.shape[-1] - 1, 1], dim=-1)
    vis = torch.sigmoid(vis) * mask
    x = x + x_res
    vis = net.vis_fc2(x * vis) * mask
    weight = vis / (torch.sum(vis, dim=2, keepdim=True) + 1e-8)

    mean, var = original_fused_mean_variance(x, weight)
    globalfeat = torch.cat([mean.squeeze(2), var.squeeze(2), weight.mean(dim=2)], dim=-1)
    globalfeat = net.geometry_fc(globalfeat)
    num_valid_obs = torch.sum(mask, dim=2)
    globalfeat = globalfeat + pos_encoding.to(globalfeat.dtype)
    globalfeat = original_multi_head_attention(net.ray_attention, globalfeat, globalfeat, globalfeat,
                                               (num_valid_obs > 1).float())
    sigma = net.out_geometry_fc(globalfeat)
    sigma_out = sigma.masked_fill(num_valid_obs < 1, 0.0)

    x = torch.cat([x, vis, ray_diff], dim=-1)
    x = net.rgb_fc(x)
    x = x.masked_fill(mask == 0, -1e9)
    blending_weights_valid = F.softmax(x, dim=2)
    rgb_out = torch.sum(rgb_in * blending_weights_valid, dim=2)
    return torch.cat([rgb_out, sigma_out], dim=-1)


def _inputs(R=5, S=12, V=6, C=32, seed=0, view_major=False):
    generator = torch.Generator().manual_seed(seed)
    rgb_feat = torch.randn(R, S, V, 3 + C, generator=generator, dtype=torch.float64)
    rgb_feat[..., :3] = torch.rand(R, S, V, 3, generator=generator, dtype=torch.float64)
    direction = F.normalize(torch.randn(R, S, V, 3, generator=generator, dtype=torch.float64), dim=-1)
    cosine = torch.rand(R, S, V, 1, generator=generator, dtype=torch.float64) * 2 - 1
    ray_diff = torch.cat([direction, cosine], dim=-1)
    mask = torch.rand(R, S, V, generator=generator) > 0.3
    mask[0, :3] = False  # samples seen by no view
    mask[1, :4] = False
    mask[1, :4, 2] = True  # samples seen by exactly one view (masked attention query rows)
    mask[2] = False  # a ray with no valid sample at all
    if view_major:  # the projector's storage: (V, ·, R, S) contiguous, permuted to (R, S, V, ·)
        rgb_feat = rgb_feat.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
        ray_diff = ray_diff.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
        mask = mask.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    return rgb_feat, ray_diff, mask


@pytest.mark.parametrize("anti_alias_pooling", [True, False])
@pytest.mark.parametrize("use_sdpa", [True, False])
@pytest.mark.parametrize("view_major, separate_colours", [(False, False), (True, False), (True, True)])
def test_aggregator_equals_the_original_formulation_outputs_and_gradients(anti_alias_pooling, use_sdpa, view_major,
                                                                          separate_colours):
    torch.manual_seed(0)
    S = 12
    net = IBRNetAggregator(32, S, anti_alias_pooling, use_sdpa).double()
    with torch.no_grad():  # a non-trivial anti-alias sharpness and biases
        net.s.fill_(-0.7)
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    rgb_feat, ray_diff, mask = _inputs(S=S, view_major=view_major)
    pos_encoding = original_positional_encoding(16, S)
    torch.testing.assert_close(net.pos_encoding, pos_encoding[0].double(), atol=0, rtol=0)

    ours_in = rgb_feat.clone().requires_grad_(True)
    rgb, sigma = net(ours_in, ray_diff, mask, ours_in[..., :3] if separate_colours else None)
    ref_in = rgb_feat.detach().clone().requires_grad_(True)
    expected = original_aggregator_forward(net, ref_in, ray_diff, mask[..., None].double(), pos_encoding)
    torch.testing.assert_close(rgb, expected[..., :3], **TOLERANCE)
    torch.testing.assert_close(sigma, expected[..., 3], **TOLERANCE)
    assert (sigma[0, :3] == 0).all()

    cotangent = torch.randn(*expected.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours_grads = torch.autograd.grad((torch.cat([rgb, sigma[..., None]], -1) * cotangent).sum(),
                                     [ours_in, *net.parameters()], allow_unused=True)
    ref_grads = torch.autograd.grad((expected * cotangent).sum(), [ref_in, *net.parameters()], allow_unused=True)
    names = ["rgb_feat"] + [name for name, _ in net.named_parameters()]
    for name, ours, ref in zip(names, ours_grads, ref_grads):
        if ref is None:  # `s` without anti-alias pooling
            assert ours is None or not ours.any(), name
            continue
        torch.testing.assert_close(ours, ref, **TOLERANCE, msg=lambda m, name=name: f"{name}: {m}")


def test_weighted_mean_variance_backward_against_autograd_of_the_formula():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, 11, dtype=torch.float64, generator=generator, requires_grad=True)
    w = torch.rand(7, 1, 11, dtype=torch.float64, generator=generator)
    w = (w / w.sum(0, keepdim=True)).requires_grad_(True)
    torch.autograd.gradcheck(weighted_mean_variance, (x, w))
    mean, var = weighted_mean_variance(x, w)
    ref_mean, ref_var = original_fused_mean_variance(x.permute(2, 0, 1)[None], w.permute(2, 0, 1)[None])
    torch.testing.assert_close(mean, ref_mean[0, :, 0].t(), **TOLERANCE)
    torch.testing.assert_close(var, ref_var[0, :, 0].t(), **TOLERANCE)


def original_compute_angle(xyz, query_pose, train_poses):
    """The original Projector.compute_angle on (R, S, 3) points, 4x4 camera-to-world poses -> (V, R, S, 4)."""
    original_shape = xyz.shape[:2]
    xyz = xyz.reshape(-1, 3)
    num_views = len(train_poses)
    query_pose = query_pose.reshape(-1, 4, 4).repeat(num_views, 1, 1)
    ray2tar_pose = query_pose[:, :3, 3].unsqueeze(1) - xyz.unsqueeze(0)
    ray2tar_pose = ray2tar_pose / (torch.norm(ray2tar_pose, dim=-1, keepdim=True) + 1e-6)
    ray2train_pose = train_poses[:, :3, 3].unsqueeze(1) - xyz.unsqueeze(0)
    ray2train_pose = ray2train_pose / (torch.norm(ray2train_pose, dim=-1, keepdim=True) + 1e-6)
    ray_diff = ray2tar_pose - ray2train_pose
    ray_diff_norm = torch.norm(ray_diff, dim=-1, keepdim=True)
    ray_diff_dot = torch.sum(ray2tar_pose * ray2train_pose, dim=-1, keepdim=True)
    ray_diff_direction = ray_diff / torch.clamp(ray_diff_norm, min=1e-6)
    return torch.cat([ray_diff_direction, ray_diff_dot], dim=-1).reshape((num_views,) + original_shape + (4,))


def test_projection_equals_the_original_formulation():
    generator = torch.Generator().manual_seed(2)
    V, H, W, R, S = 4, 24, 32, 6, 9
    angles = torch.linspace(-0.4, 0.4, V, dtype=torch.float64)
    world_from_cam = torch.eye(4, dtype=torch.float64).repeat(V, 1, 1)
    world_from_cam[:, 0, 0], world_from_cam[:, 0, 2] = torch.cos(angles), torch.sin(angles)
    world_from_cam[:, 2, 0], world_from_cam[:, 2, 2] = -torch.sin(angles), torch.cos(angles)
    world_from_cam[:, :3, 3] = torch.stack([-3 * torch.sin(angles), 0.1 * angles, 3 - 3 * torch.cos(angles)], -1)
    cam_from_world = torch.linalg.inv(world_from_cam)
    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]], dtype=torch.float64).expand(V, 3, 3)
    images = torch.rand(V, 3, H, W, generator=generator, dtype=torch.float64)
    features = torch.randn(V, 8, H // 4, W // 4, generator=generator, dtype=torch.float64)
    points = torch.randn(R, S, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.5, 1.0, 2.0]) \
        + torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    points[0, 0] = torch.tensor([0.0, 0.0, -5.0])  # behind the cameras
    target = torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)
    proj = project_to_sources(points, target, images, features, K, cam_from_world, world_from_cam)

    # the original's compute / compute_projections with 4x4 K and c2w poses
    K4 = torch.eye(4, dtype=torch.float64).repeat(V, 1, 1)
    K4[:, :3, :3] = K
    xyz_h = torch.cat([points.reshape(-1, 3), torch.ones(R * S, 1, dtype=torch.float64)], dim=-1)
    projections = K4.bmm(torch.inverse(world_from_cam)).bmm(xyz_h.t()[None].repeat(V, 1, 1)).permute(0, 2, 1)
    pixels = torch.clamp(projections[..., :2] / torch.clamp(projections[..., 2:3], min=1e-8), min=-1e6, max=1e6)
    in_front = projections[..., 2] > 0
    pixels, in_front = pixels.reshape(V, R, S, 2), in_front.reshape(V, R, S)
    grid = 2 * pixels / torch.tensor([W - 1.0, H - 1.0], dtype=torch.float64) - 1.0
    rgb = F.grid_sample(images, grid, align_corners=True).permute(2, 3, 0, 1)
    feat = F.grid_sample(features, grid, align_corners=True).permute(2, 3, 0, 1)
    inbound = (pixels[..., 0] <= W - 1.0) & (pixels[..., 0] >= 0) & (pixels[..., 1] <= H - 1.0) & (pixels[..., 1] >= 0)
    query_pose = torch.eye(4, dtype=torch.float64)
    query_pose[:3, 3] = target
    ray_diff = original_compute_angle(points, query_pose, world_from_cam).permute(1, 2, 0, 3)

    torch.testing.assert_close(proj.rgb_feat, torch.cat([rgb, feat], dim=-1), **TOLERANCE)
    torch.testing.assert_close(proj.ray_diff, ray_diff, **TOLERANCE)
    torch.testing.assert_close(ray_direction_difference(points, target, world_from_cam[:, :3, 3]), ray_diff,
                               **TOLERANCE)
    assert torch.equal(proj.mask, (inbound & in_front).permute(1, 2, 0))
    assert 0 < proj.mask.sum() < proj.mask.numel() and not proj.mask[0, 0].any()


def test_reference_attention_temperature_is_sqrt_head_dim():
    q, k = torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.randn(2, 3, 5, 4, dtype=torch.float64)
    v = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    expected = torch.softmax(torch.matmul(q / math.sqrt(4), k.transpose(-1, -2)), -1) @ v
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v), expected, **TOLERANCE)


def original_resunet_forward(net, x):
    """The original ResUNet.forward / BasicBlock / conv / upconv / skipconnect composition on our modules."""

    def block(b, x):
        identity = x
        out = F.relu(b.bn1(b.conv1(x)))
        out = b.bn2(b.conv2(out))
        if b.downsample is not None:
            identity = b.downsample(x)
        return F.relu(out + identity)

    def conv(c, x):
        return F.elu(c.bn(c.conv(x)))

    def upconv(u, x):
        return conv(u.conv, F.interpolate(x, scale_factor=2, align_corners=True, mode="bilinear"))

    def skipconnect(x1, x2):
        diff_y, diff_x = x2.size()[2] - x1.size()[2], x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, (diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2))
        return torch.cat([x2, x1], dim=1)

    x = F.relu(net.bn1(net.conv1(x)))
    x1 = x
    for b in net.layer1:
        x1 = block(b, x1)
    x2 = x1
    for b in net.layer2:
        x2 = block(b, x2)
    x3 = x2
    for b in net.layer3:
        x3 = block(b, x3)
    x = conv(net.iconv3, skipconnect(x2, upconv(net.upconv3, x3)))
    x = conv(net.iconv2, skipconnect(x1, upconv(net.upconv2, x)))
    x_out = net.out_conv(x)
    return x_out[:, :32], x_out[:, -32:]


@pytest.mark.parametrize("size", [(48, 64), (61, 83)])
def test_feature_net_equals_the_original_formulation(size):
    from ibrnet.feature_net import ResUNet

    torch.manual_seed(0)
    net = ResUNet().double()
    with torch.no_grad():  # non-trivial instance-norm affine parameters
        for name, parameter in net.named_parameters():
            if ".bn" in name or name.startswith("bn") or "downsample.1" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    images = torch.rand(2, 3, *size, dtype=torch.float64)
    ours = net(images)
    expected = original_resunet_forward(net, images)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, **TOLERANCE)
    cotangent = [torch.randn_like(a) for a in ours]
    params = list(net.parameters())
    ours_grads = torch.autograd.grad(sum((a * c).sum() for a, c in zip(ours, cotangent)), params)
    ref_grads = torch.autograd.grad(sum((a * c).sum() for a, c in zip(expected, cotangent)), params)
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
