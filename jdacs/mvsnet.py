"""MVSNet (Yao et al., ECCV 2018) as JDACS trains it: 2D features, variance cost volume, 3D U-Net, soft-argmin.

Module and parameter names equal MVSNet_pytorch / JDACS (`feature.conv0.conv.weight`,
`cost_regularization.conv7.0.weight`, `refine_network.res.bn.bias`, ...), so their checkpoints load 1:1
(`python -m jdacs.import_checkpoint`). Layers, padding, BatchNorm use and output heads are the original's.
Deliberate differences, each documented where it is implemented:

* the warp samples with align_corners=True (`_Sweep`, as `multiview.geometry.warping.plane_sweep_warp`); the
  original's grid_sample call relies on the default, which since torch 1.3 is align_corners=False: a silent
  half-pixel shift, a known bug;
* the feature-resolution K follows the project's pixel-centre convention (`MVSNet.forward`);
* the cost volume is streamed over views and, by default, never held: computed with the 3D U-Net's first
  convolution in slabs of hypotheses and recomputed in backward (`cost_volume_conv3d`) — same values and
  gradients, a fraction of the memory; the 3D U-Net runs channels-last on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from multiview.geometry.intrinsics import crop_intrinsics, scale_intrinsics
from multiview.geometry.projection import pixel_to_grid
from multiview.geometry.transforms import relative_transform
from multiview.geometry.warping import plane_sweep_pixels

FEATURE_STRIDE = 4  # FeatureNet output = 1/4 of the image
UNET_FACTOR = 8  # CostRegNet halves D, H and W three times


class ConvBnReLU(nn.Module):
    """Conv (no bias) + BatchNorm + ReLU, 2D or 3D; children `conv` and `bn` as in the original."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, pad: int = 1,
                 dims: int = 2):
        super().__init__()
        conv, norm = {2: (nn.Conv2d, nn.BatchNorm2d), 3: (nn.Conv3d, nn.BatchNorm3d)}[dims]
        self.conv = conv(in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn = norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class FeatureNet(nn.Module):
    """8-layer 2D CNN (40,120 parameters): (N, 3, H, W) -> (N, 32, H/4, W/4) (sizes rounded up)."""

    def __init__(self):
        super().__init__()
        self.conv0 = ConvBnReLU(3, 8)
        self.conv1 = ConvBnReLU(8, 8)
        self.conv2 = ConvBnReLU(8, 16, 5, 2, 2)
        self.conv3 = ConvBnReLU(16, 16)
        self.conv4 = ConvBnReLU(16, 16)
        self.conv5 = ConvBnReLU(16, 32, 5, 2, 2)
        self.conv6 = ConvBnReLU(32, 32)
        self.feature = nn.Conv2d(32, 32, 3, 1, 1)  # plain conv with bias: the features are not rectified

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.conv0, self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6,
                      self.feature):
            x = layer(x)
        return x


def _up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """ConvTranspose3d (stride 2, output_padding 1: exactly doubles D, H, W) + BN + ReLU, as a Sequential (0, 1, 2)."""
    return nn.Sequential(
        nn.ConvTranspose3d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))


class CostRegNet(nn.Module):
    """3D U-Net (298,009 parameters): (B, 32, D, H, W) -> (B, 1, D, H, W) cost; D, H, W divisible by 8.

    Skips are added (conv4 + up(conv6), conv2 + up(.), conv0 + up(.)); `prob` is a plain Conv3d with bias.
    Runs channels-last on CPU (`_conv_memory_format`), same values.
    """

    def __init__(self):
        super().__init__()
        self.conv0 = ConvBnReLU(32, 8, dims=3)
        self.conv1 = ConvBnReLU(8, 16, stride=2, dims=3)
        self.conv2 = ConvBnReLU(16, 16, dims=3)
        self.conv3 = ConvBnReLU(16, 32, stride=2, dims=3)
        self.conv4 = ConvBnReLU(32, 32, dims=3)
        self.conv5 = ConvBnReLU(32, 64, stride=2, dims=3)
        self.conv6 = ConvBnReLU(64, 64, dims=3)
        self.conv7 = _up_block(64, 32)
        self.conv9 = _up_block(32, 16)
        self.conv11 = _up_block(16, 8)
        self.prob = nn.Conv3d(8, 1, 3, stride=1, padding=1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        volume = volume.contiguous(memory_format=_conv_memory_format(volume.device))
        return self.forward_from_conv0(self.conv0.conv(volume))

    def forward_from_conv0(self, conv0_output: torch.Tensor) -> torch.Tensor:
        """The network given conv0's convolution output (B, 8, D, H, W), before its BN + ReLU
        (`cost_volume_conv3d` computes that convolution together with the cost volume)."""
        conv0 = F.relu(self.conv0.bn(conv0_output), inplace=True)
        conv2 = self.conv2(self.conv1(conv0))
        conv4 = self.conv4(self.conv3(conv2))
        x = self.conv6(self.conv5(conv4))
        x = conv4 + self.conv7(x)
        x = conv2 + self.conv9(x)
        x = conv0 + self.conv11(x)
        return _conv_to_one_channel(self.prob, x)


def _conv_to_one_channel(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a C→1 3x3x3 convolution (CostRegNet.prob), same weights and values.

    PyTorch runs a batch-1 CPU conv3d on oneDNN only when N·C·D·H > 20480; below that its im2col path is about ten
    times slower for a single output channel (forward + backward). There the same weights run as a depthwise
    convolution (oneDNN) followed by the sum over channels.
    """
    if x.device.type != "cpu" or x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] > 20480:
        return conv(x)
    channels = x.shape[1]
    per_channel = F.conv3d(x, conv.weight.view(channels, 1, *conv.kernel_size), padding=conv.padding,
                           groups=channels)
    return per_channel.sum(1, keepdim=True) + conv.bias.view(1, 1, 1, 1, 1)


class RefineNet(nn.Module):
    """JDACS's working depth refinement (20,066 parameters; MVSNet_pytorch's own version crashes).

    cat(reference image bilinearly downsampled ×0.25 (align_corners=False, no antialiasing, as the original),
    depth) -> ConvBnReLU 4→32→32→32 -> `res` ConvBnReLU 32→1. Quirk kept from JDACS: `res` ends with BN + ReLU,
    so the residual added to the depth is always ≥ 0 (refinement can only push depths away from the camera).
    """

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBnReLU(4, 32)
        self.conv2 = ConvBnReLU(32, 32)
        self.conv3 = ConvBnReLU(32, 32)
        self.res = ConvBnReLU(32, 1)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W), depth (B, H/4, W/4) -> refined depth (B, H/4, W/4)."""
        small = F.interpolate(image, scale_factor=1 / FEATURE_STRIDE, mode="bilinear", align_corners=False)
        depth = depth.unsqueeze(1)
        residual = self.res(self.conv3(self.conv2(self.conv1(torch.cat([small, depth], dim=1)))))
        return (depth + residual).squeeze(1)


def depth_regression(prob_volume: torch.Tensor, depth_values: torch.Tensor) -> torch.Tensor:
    """Soft-argmin: Σ_d p_d · depth_d. prob_volume (B, D, H, W), depth_values (B, D) -> (B, H, W)."""
    return (prob_volume * depth_values[:, :, None, None]).sum(1)


def photometric_confidence(prob_volume: torch.Tensor) -> torch.Tensor:
    """MVSNet's confidence (no gradient): probability mass of the 4 hypotheses d−1..d+2 around the expected index.

    prob_volume (B, D, H, W) -> (B, H, W). The window sum is 4·avg_pool3d over D after zero-padding (1, 2), gathered
    at long(Σ_d p_d·d) — truncation, not rounding, as in the original.
    """
    with torch.no_grad():
        B, D = prob_volume.shape[:2]
        window_sum = 4 * F.avg_pool3d(F.pad(prob_volume.unsqueeze(1), (0, 0, 0, 0, 1, 2)), (4, 1, 1), stride=1)
        indices = torch.arange(D, device=prob_volume.device, dtype=prob_volume.dtype).expand(B, D)
        expected_index = depth_regression(prob_volume, indices).long()
        return torch.gather(window_sum.squeeze(1), 1, expected_index.unsqueeze(1)).squeeze(1)


def _conv_memory_format(device: torch.device) -> torch.memory_format:
    """channels_last_3d on CPU, where oneDNN runs the 3D U-Net about twice as fast (forward + backward) in it."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


class _Sweep:
    """Plane-sweep sampling grids of every source view (from detached geometry), and the warp of features with them.

    The grids come from `plane_sweep_pixels` (the shared geometry, integer pixel centres) and are sampled with
    `grid_sample(align_corners=True)` — exactly `plane_sweep_warp`, whose validity mask MVSNet does not use and which
    would recompute the geometry for every slab and again in backward (together over half of its time here): they
    are computed once, in chunks of hypotheses whose temporaries stay below `GRID_BYTES`.

    On CPU `grid_sample` parallelises over the batch only, so the reference grid is cut into `bands` horizontal
    bands (up to 8; K_ref cropped with `crop_intrinsics`) that the sampler sees as batch items: the same samples,
    all threads busy. Warped volumes stay in that layout, viewed as (B, C, n, bands, H/bands, W); `banded` views an
    ordinary (B, C, n, H, W) volume the same way.
    """

    GRID_BYTES = 256 * 2**20

    def __init__(self, depth_values, K_ref, K_src, src_from_ref, height: int, width: int,
                 src_size: tuple[int, int], dtype: torch.dtype):
        device = depth_values.device
        self.height, self.width, self.num_depths = height, width, depth_values.shape[1]
        self.bands = max(b for b in (8, 4, 2, 1) if height % b == 0) if device.type == "cpu" else 1
        B, S, k, rows = K_src.shape[0], K_src.shape[1], self.bands, height // self.bands
        geometry_dtype = depth_values.dtype
        K_ref = K_ref.detach().to(geometry_dtype)
        K_ref = torch.stack([crop_intrinsics(K_ref, top=b * rows, left=0) for b in range(k)], 1).flatten(0, 1)
        K_src = K_src.detach().to(geometry_dtype).repeat_interleave(k, 0)  # (B·bands, S, 3, 3)
        src_from_ref = src_from_ref.detach().to(geometry_dtype).repeat_interleave(k, 0)
        depths = depth_values.detach()[:, None, :, None, None].expand(B, k, self.num_depths, rows, width)
        depths = depths.reshape(B * k, self.num_depths, rows, width)
        self.grids = torch.empty(S, B * k, self.num_depths * rows, width, 2, dtype=dtype, device=device)
        planes = max(1, self.GRID_BYTES // (B * height * width * 64))  # ~64 bytes of temporaries per pixel and plane
        for start in range(0, self.num_depths, planes):
            stop = min(start + planes, self.num_depths)
            for index in range(S):
                uv, _ = plane_sweep_pixels(depths[:, start:stop], K_ref, K_src[:, index], src_from_ref[:, index])
                self.grids[index, :, start * rows:stop * rows] = pixel_to_grid(uv, *src_size).flatten(1, 2)

    def banded(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, n, H, W) contiguous -> view (B, C, n, bands, H/bands, W)."""
        return volume.view(*volume.shape[:3], self.bands, self.height // self.bands, self.width)

    def warp(self, src_features: torch.Tensor, index: int, start: int, stop: int) -> torch.Tensor:
        """Source `index`'s features (B, C, Hs, Ws) at hypotheses start..stop−1, zeros outside the source image
        (padding_mode zeros, as the original): a (B, C, stop − start, bands, H/bands, W) view."""
        B, C, Hs, Ws = src_features.shape
        k, rows = self.bands, self.height // self.bands
        sources = src_features.unsqueeze(1).expand(B, k, C, Hs, Ws).reshape(B * k, C, Hs, Ws)
        grid = self.grids[index, :, start * rows:stop * rows]
        warped = F.grid_sample(sources, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return warped.view(B, k, C, stop - start, rows, self.width).permute(0, 2, 3, 1, 4, 5)


def _make_sweep(ref_features, src_features, K_ref, K_src, src_from_ref, depth_values) -> _Sweep:
    """Check the cost-volume inputs (see `build_cost_volume`) and build their sweep."""
    if ref_features.dim() != 4:
        raise ValueError(f"ref_features must be (B, C, H, W), got {tuple(ref_features.shape)}")
    B, C, H, W = ref_features.shape
    if src_features.dim() != 5 or src_features.shape[0] != B or src_features.shape[2] != C:
        raise ValueError(f"src_features must be ({B}, S, {C}, Hs, Ws), got {tuple(src_features.shape)}")
    S = src_features.shape[1]
    if depth_values.dim() != 2 or depth_values.shape[0] != B:
        raise ValueError(f"depth_values must be ({B}, D), got {tuple(depth_values.shape)}")
    for name, tensor, shape in (("K_ref", K_ref, (B, 3, 3)), ("K_src", K_src, (B, S, 3, 3)),
                                ("src_from_ref", src_from_ref, (B, S, 4, 4))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    return _Sweep(depth_values, K_ref, K_src, src_from_ref, H, W, tuple(src_features.shape[-2:]),
                  src_features.dtype)


def _view_sums(sweep: _Sweep, ref_features: torch.Tensor, warped_volumes, num_planes: int, first: int = 0,
               stop: int | None = None):
    """Σ_v volume_v and Σ_v volume_v² over the reference (its features repeated over the hypotheses) and the warped
    source volumes (banded, see `_Sweep`), accumulated in place without autograd; `warped_volumes` may be a
    generator (one volume alive at a time). The volumes fill planes first..stop−1 of the (B, C, num_planes, H, W)
    results (sum, sum_sq); the other planes are zeros (the padding of a convolution along D)."""
    stop = num_planes if stop is None else stop
    total = ref_features.unsqueeze(2).expand(-1, -1, num_planes, -1, -1).contiguous()
    total[:, :, :first].zero_()
    total[:, :, stop:].zero_()
    sum_sq = total.square()
    total_banded, sum_sq_banded = sweep.banded(total[:, :, first:stop]), sweep.banded(sum_sq[:, :, first:stop])
    for warped in warped_volumes:
        total_banded += warped
        sum_sq_banded.addcmul_(warped, warped)
    return total, sum_sq


def _variance_(total: torch.Tensor, sum_sq: torch.Tensor, num_views: int) -> torch.Tensor:
    """In place: `total` becomes the mean and `sum_sq` the variance sum_sq/V − mean² (returned)."""
    mean = total.div_(num_views)
    return sum_sq.div_(num_views).addcmul_(mean, mean, value=-1)


def build_cost_volume(ref_features: torch.Tensor, src_features: torch.Tensor, K_ref: torch.Tensor,
                      K_src: torch.Tensor, src_from_ref: torch.Tensor, depth_values: torch.Tensor) -> torch.Tensor:
    """Variance over the V = S + 1 views of the reference features and the plane-swept source features.

    variance = Σ_v volume_v² / V − (Σ_v volume_v / V)², per channel and hypothesis, accumulated view by view.
    Without gradients the sums are accumulated in place (one warped volume alive at a time); with gradients this
    is plain autograd, which keeps every warped volume for backward — the original's training path. For training
    without storing anything see `cost_volume_conv3d`.

    The warp grid comes from detached geometry, as in the original (its grid is built under no_grad): gradients
    reach the features, never the depth hypotheses or cameras (which hold no trainable parameter).

    Args:
        ref_features: (B, C, H, W); K_ref (B, 3, 3) for that grid.
        src_features: (B, S, C, Hs, Ws); K_src (B, S, 3, 3) for their grid; src_from_ref (B, S, 4, 4).
        depth_values: (B, D) fronto-parallel hypotheses (reference-camera depth).
    Returns:
        (B, C, D, H, W) variance volume.
    """
    sweep = _make_sweep(ref_features, src_features, K_ref, K_src, src_from_ref, depth_values)
    S, D, num_views = src_features.shape[1], sweep.num_depths, src_features.shape[1] + 1
    warps = (sweep.warp(src_features[:, index], index, 0, D) for index in range(S))
    if not (torch.is_grad_enabled() and (ref_features.requires_grad or src_features.requires_grad)):
        return _variance_(*_view_sums(sweep, ref_features, warps, D), num_views)
    reference = sweep.banded(ref_features.unsqueeze(2))  # broadcast over D
    total, sum_sq = reference, reference.square()
    for warped in warps:
        total = total + warped
        sum_sq = sum_sq + warped.square()
    return (sum_sq / num_views - (total / num_views).square()).reshape(*ref_features.shape[:2], D,
                                                                      *ref_features.shape[2:])


def cost_volume_conv3d(ref_features: torch.Tensor, src_features: torch.Tensor, K_ref: torch.Tensor,
                       K_src: torch.Tensor, src_from_ref: torch.Tensor, depth_values: torch.Tensor,
                       weight: torch.Tensor, slab_bytes: int = 256 * 2**20) -> torch.Tensor:
    """conv3d(build_cost_volume(...), weight, padding=1) without ever holding the variance volume.

    The variance and the 3x3x3 convolution are computed together in slabs of hypotheses (each with a one-plane
    halo, zeros at the ends as conv3d's padding); backward recomputes each slab and backpropagates through the
    convolution and the warp slab by slab. Memory: the (B, O, D, H, W) output plus a working set of about
    `slab_bytes`, instead of the variance, its gradient and (with plain autograd) every warped volume.

    Gradients reach the features and the weight; the geometry is detached, as in `build_cost_volume`.

    Args:
        ref_features, src_features, K_ref, K_src, src_from_ref, depth_values: as in `build_cost_volume`.
        weight: (O, C, 3, 3, 3) convolution weight (no bias, stride 1).
    Returns:
        (B, O, D, H, W), channels-last on CPU.
    """
    sweep = _make_sweep(ref_features, src_features, K_ref, K_src, src_from_ref, depth_values)
    if weight.dim() != 5 or weight.shape[1:] != (ref_features.shape[1], 3, 3, 3):
        raise ValueError(f"weight must be (O, {ref_features.shape[1]}, 3, 3, 3), got {tuple(weight.shape)}")
    B, C, H, W = ref_features.shape
    # working set per hypothesis plane in backward: S warped volumes + sum, sum², padded input, gradient, temporaries
    plane_bytes = (src_features.shape[1] + 5) * B * C * H * W * ref_features.element_size()
    num_slabs = -(-sweep.num_depths // max(1, slab_bytes // plane_bytes))
    planes = -(-sweep.num_depths // num_slabs)  # equal slabs (the last one may be shorter)
    slabs = [(start, min(start + planes, sweep.num_depths)) for start in range(0, sweep.num_depths, planes)]
    return _SlabVarianceConv.apply(sweep, slabs, weight, ref_features, src_features)


def _slab_planes(start: int, stop: int, num_depths: int) -> tuple[int, int, int]:
    """For a slab start..stop−1 and a 3-tap convolution along D: its input planes start−1..stop hold hypotheses
    lo..hi−1 (clipped at the ends of the volume) at positions first..first + hi − lo − 1. Returns (lo, hi, first)."""
    lo, hi = max(start - 1, 0), min(stop + 1, num_depths)
    return lo, hi, lo - (start - 1)


class _SlabVarianceConv(torch.autograd.Function):
    """`cost_volume_conv3d`: forward and backward slab by slab, storing only the 2D features and the weight.

    Backward for a slab start..stop−1 (x = the variance, y = conv3d(x, w), V views, m = the mean over views):
    ∂L/∂w += conv3d_weight(x[start−1..stop], ∂L/∂y[start..stop−1]);
    ∂L/∂x[start..stop−1] = the adjoint convolution of ∂L/∂y[start−1..stop], cropped;
    ∂L/∂volume_v = (2/V)(volume_v − m)·∂L/∂x, backpropagated through the warp to each view's features.
    Under CUDA autocast it runs in float32 (a variance of half-precision features loses its digits).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, sweep: _Sweep, slabs, weight, ref_features, src_features):
        B, C, H, W = ref_features.shape
        S, D, num_views = src_features.shape[1], sweep.num_depths, src_features.shape[1] + 1
        out = torch.empty(B, weight.shape[0], D, H, W, dtype=weight.dtype, device=weight.device,
                          memory_format=_conv_memory_format(weight.device))
        for start, stop in slabs:
            lo, hi, first = _slab_planes(start, stop, D)
            warps = (sweep.warp(src_features[:, index], index, lo, hi) for index in range(S))
            sums = _view_sums(sweep, ref_features, warps, stop - start + 2, first, first + hi - lo)
            out[:, :, start:stop] = F.conv3d(_variance_(*sums, num_views), weight, padding=(0, 1, 1))
        ctx.sweep, ctx.slabs = sweep, slabs
        ctx.save_for_backward(weight, ref_features, src_features)
        return out

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out):
        weight, ref_features, src_features = ctx.saved_tensors
        sweep, S, D = ctx.sweep, src_features.shape[1], ctx.sweep.num_depths
        (B, _, H, W), num_views = ref_features.shape, S + 1
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[2] else None
        grad_ref = torch.zeros_like(ref_features) if ctx.needs_input_grad[3] else None
        grad_src = torch.zeros_like(src_features) if ctx.needs_input_grad[4] else None
        for start, stop in ctx.slabs:
            lo, hi, first = _slab_planes(start, stop, D)
            leaves, warped = [], []
            with torch.enable_grad():
                for index in range(S):
                    leaves.append(src_features[:, index].detach().requires_grad_(grad_src is not None))
                    warped.append(sweep.warp(leaves[-1], index, lo, hi))
            total, x = _view_sums(sweep, ref_features, (volume.detach() for volume in warped), stop - start + 2,
                                  first, first + hi - lo)
            x = _variance_(total, x, num_views)  # planes start−1..stop
            if grad_weight is not None:
                grad_weight += torch.nn.grad.conv3d_weight(x, weight.shape, grad_out[:, :, start:stop],
                                                           padding=(0, 1, 1))
            # ∂L/∂x[start..stop−1] from ∂L/∂y[start−1..stop]: the input gradient of a size-preserving convolution of
            # the slab, cropped (its end planes would need ∂L/∂y beyond the slab). Asked for with the 32-channel
            # input's shape, which keeps oneDNN's size heuristic away from the slow im2col path.
            g = torch.zeros(B, weight.shape[0], stop - start + 2, H, W, dtype=grad_out.dtype, device=grad_out.device)
            g[:, :, first:first + hi - lo] = grad_out[:, :, lo:hi]
            grad_x = torch.nn.grad.conv3d_input(x.shape, weight, g, padding=1)[:, :, 1:-1].mul_(2 / num_views)
            del x, g
            mean, grad_x = sweep.banded(total[:, :, 1:-1]), sweep.banded(grad_x)
            core = slice(start - lo, stop - lo)  # of the warped planes lo..hi−1
            for index in range(S if grad_ref is not None or grad_src is not None else 0):
                # the warp's backward reads its inputs (features, grid), never its output: reuse the output's memory
                grad_volume = warped[index].detach()
                grad_volume[:, :, core].sub_(mean).mul_(grad_x)
                grad_volume[:, :, :core.start].zero_()
                grad_volume[:, :, core.stop:].zero_()
                if grad_ref is not None:  # Σ_v (volume_v − m) = 0: the reference's gradient is −Σ of the sources'
                    grad_ref -= grad_volume.sum(2).reshape_as(grad_ref)
                if grad_src is not None:
                    grad_src[:, index] += torch.autograd.grad(warped[index], leaves[index], grad_volume)[0]
                warped[index] = grad_volume = None
        return None, None, grad_weight, grad_ref, grad_src


@dataclass
class MVSNetOutput:
    """depth (B, H/4, W/4) soft-argmin (before refinement); confidence (B, H/4, W/4) in [0, 1];
    prob_volume (B, D, H/4, W/4); refined_depth (B, H/4, W/4) when the model refines (JDACS returns it as "depth")."""

    depth: torch.Tensor
    confidence: torch.Tensor
    prob_volume: torch.Tensor
    refined_depth: torch.Tensor | None = None


class MVSNet(nn.Module):
    """MVSNet: 338,129 parameters without refinement (the published setting), 358,195 with.

    Args:
        refine: add JDACS's RefineNet (off in both original training scripts).
        checkpoint_cost_volume: never hold the variance volume: compute it together with CostRegNet's first
            convolution in slabs of hypotheses and recompute it in backward (`cost_volume_conv3d`). Default True:
            same values, and a DTU-size training step (3 views 640x512, D 192, CPU) peaks under 3 GiB instead of
            5.6 and takes less time (bench/bench_mvsnet.py and its numbers in the README).
            False: `build_cost_volume` + plain autograd, storing every warped volume like the original.
    """

    def __init__(self, refine: bool = False, checkpoint_cost_volume: bool = True):
        super().__init__()
        self.refine, self.checkpoint_cost_volume = refine, checkpoint_cost_volume
        self.feature = FeatureNet()
        self.cost_regularization = CostRegNet()
        if refine:
            self.refine_network = RefineNet()

    def forward(self, images: torch.Tensor, K: torch.Tensor, cam_from_world: torch.Tensor,
                depth_values: torch.Tensor) -> MVSNetOutput:
        """Depth of view 0 (the reference) from V views.

        Args:
            images: (B, V, 3, H, W), H and W multiples of 32 (JDACS: per-image standardised colours).
            K: (B, V, 3, 3) intrinsics of the images (H, W); cam_from_world: (B, V, 4, 4).
            depth_values: (B, D) hypotheses, D a multiple of 8; same unit as the camera translations.
        Returns:
            MVSNetOutput at 1/4 resolution.
        """
        B, V, H, W, D = _check_inputs(images, K, cam_from_world, depth_values)
        # BatchNorm statistics per view, as the original (one FeatureNet call per view, not one over all B·V images)
        features = [self.feature(images[:, view]) for view in range(V)]
        h, w = features[0].shape[-2:]
        # The original divides K by 4 (cx/4). With pixel centres at integers (DESIGN.md §3) the 1/4 grid has
        # cx' = (cx + 0.5)/4 − 0.5: the project convention, and the one the DTU reader uses to derive the image K
        # from the 1/4-resolution cam.txt K — so on DTU the feature K here IS the cam.txt K the original uses.
        K_features = scale_intrinsics(K, w / W, h / H)
        src_from_ref = relative_transform(cam_from_world[:, 1:], cam_from_world[:, :1])
        geometry = (features[0], torch.stack(features[1:], 1), K_features[:, 0], K_features[:, 1:], src_from_ref,
                    depth_values)
        regularization = self.cost_regularization
        if self.checkpoint_cost_volume:
            cost = regularization.forward_from_conv0(cost_volume_conv3d(*geometry, regularization.conv0.conv.weight))
        else:
            cost = regularization(build_cost_volume(*geometry))
        cost = cost.squeeze(1)
        prob_volume = F.softmax(cost, dim=1)  # no negation: the network learns the sign of its "cost"
        depth = depth_regression(prob_volume, depth_values)
        refined = self.refine_network(images[:, 0], depth) if self.refine else None
        return MVSNetOutput(depth, photometric_confidence(prob_volume), prob_volume, refined)


def _check_inputs(images, K, cam_from_world, depth_values):
    """Shapes and divisibility of MVSNet's inputs, checked before any computation -> (B, V, H, W, D)."""
    if images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
    B, V, _, H, W = images.shape
    if V < 2:
        raise ValueError(f"MVSNet needs a reference and at least one source view, got V = {V}")
    if depth_values.dim() != 2 or depth_values.shape[0] != B:
        raise ValueError(f"depth_values must be ({B}, D), got {tuple(depth_values.shape)}")
    for name, tensor, shape in (("K", K, (B, V, 3, 3)), ("cam_from_world", cam_from_world, (B, V, 4, 4))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    D = depth_values.shape[1]
    multiple = FEATURE_STRIDE * UNET_FACTOR
    if D % UNET_FACTOR or H % multiple or W % multiple:
        raise ValueError(f"MVSNet's 3D U-Net halves D, H/4 and W/4 three times, so each must be divisible by "
                         f"{UNET_FACTOR} (H and W multiples of {multiple}): got D = {D}, H/4 = {H / FEATURE_STRIDE:g}, "
                         f"W/4 = {W / FEATURE_STRIDE:g} for images {H}x{W}")
    return B, V, H, W, D
