"""MVSNet (Yao et al., ECCV 2018) as JDACS trains it: 2D features, variance cost volume, 3D U-Net, soft-argmin.

Module and parameter names equal MVSNet_pytorch / JDACS (`feature.conv0.conv.weight`,
`cost_regularization.conv7.0.weight`, `refine_network.res.bn.bias`, ...), so their checkpoints load 1:1
(`python -m jdacs.import_checkpoint`). Layers, padding, BatchNorm use and output heads are the original's.
Deliberate differences, each documented where it is implemented:

* the warp samples with align_corners=True (`plane_sweep_warp`); the original's grid_sample call relies on the
  default, which since torch 1.3 is align_corners=False: a silent half-pixel shift, a known bug;
* the feature-resolution K follows the project's pixel-centre convention (`MVSNet.forward`);
* the variance volume is streamed over views and in training, by default, recomputed in backward instead of
  stored (`build_cost_volume`) — same values and gradients, far less memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from multiview.geometry.intrinsics import scale_intrinsics
from multiview.geometry.transforms import relative_transform
from multiview.geometry.warping import plane_sweep_warp

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv0 = self.conv0(x)
        conv2 = self.conv2(self.conv1(conv0))
        conv4 = self.conv4(self.conv3(conv2))
        x = self.conv6(self.conv5(conv4))
        x = conv4 + self.conv7(x)
        x = conv2 + self.conv9(x)
        x = conv0 + self.conv11(x)
        return self.prob(x)


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


class _Sweep(NamedTuple):
    """Plane-sweep geometry (detached): hypotheses (B, D, H, W), K_ref (B, 3, 3), K_src (B, S, 3, 3),
    src_from_ref (B, S, 4, 4)."""

    hypotheses: torch.Tensor
    K_ref: torch.Tensor
    K_src: torch.Tensor
    src_from_ref: torch.Tensor

    def warp(self, src_features: torch.Tensor, index: int) -> torch.Tensor:
        """Source `index`'s features (B, C, Hs, Ws) seen from the reference: (B, C, D, H, W), zeros outside."""
        return plane_sweep_warp(src_features, self.hypotheses, self.K_ref, self.K_src[:, index],
                                self.src_from_ref[:, index])[0]


def _view_sums_in_place(ref_features: torch.Tensor, src_features: torch.Tensor, sweep: _Sweep, squares: bool):
    """Σ_v volume_v and (if `squares`) Σ_v volume_v² over the V views, accumulated in place — no autograd.

    The reference volume is the reference features repeated over D. Returns (sum, sum_sq or None), (B, C, D, H, W).
    """
    total = ref_features.unsqueeze(2).expand(-1, -1, sweep.hypotheses.shape[1], -1, -1).contiguous()
    sum_sq = total.square() if squares else None
    for index in range(src_features.shape[1]):
        warped = sweep.warp(src_features[:, index], index)
        total += warped
        if squares:
            sum_sq.addcmul_(warped, warped)
        del warped
    return total, sum_sq


class _RecomputedVariance(torch.autograd.Function):
    """Variance volume that stores only the 2D features: backward re-warps each source view when it needs it.

    With m = mean over views, ∂var/∂volume_v = (2/V)(volume_v − m); backward streams: m (one re-warp pass), then
    per source view re-warp, form (2/V)·grad·(warped − m) in the warped volume's own memory and backpropagate it
    through the warp to that view's features. Peak: ~3 volumes instead of V + 2.
    """

    @staticmethod
    def forward(ctx, sweep: _Sweep, ref_features: torch.Tensor, src_features: torch.Tensor) -> torch.Tensor:
        num_views = src_features.shape[1] + 1
        total, sum_sq = _view_sums_in_place(ref_features, src_features, sweep, squares=True)
        ctx.sweep = sweep
        ctx.save_for_backward(ref_features, src_features)
        return sum_sq.div_(num_views).sub_(total.div_(num_views).square_())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_variance: torch.Tensor):
        ref_features, src_features = ctx.saved_tensors
        sweep, num_views = ctx.sweep, src_features.shape[1] + 1
        mean = _view_sums_in_place(ref_features, src_features, sweep, squares=False)[0].div_(num_views)
        grad_src = None
        if ctx.needs_input_grad[2]:
            grad_src = torch.empty_like(src_features)
            for index in range(src_features.shape[1]):
                with torch.enable_grad():
                    features = src_features[:, index].detach().requires_grad_()
                    warped = sweep.warp(features, index)
                # grid_sample's backward reads its input and grid, never its output: reuse the output's memory
                grad_warped = warped.detach().sub_(mean).mul_(grad_variance).mul_(2 / num_views)
                grad_src[:, index] = torch.autograd.grad(warped, features, grad_warped)[0]
                del warped, grad_warped
        grad_ref = None
        if ctx.needs_input_grad[1]:
            grad_ref = mean.neg_().add_(ref_features.unsqueeze(2)).mul_(grad_variance).sum(2).mul_(2 / num_views)
        return None, grad_ref, grad_src


def build_cost_volume(ref_features: torch.Tensor, src_features: torch.Tensor, K_ref: torch.Tensor,
                      K_src: torch.Tensor, src_from_ref: torch.Tensor, depth_values: torch.Tensor,
                      recompute: bool = True) -> torch.Tensor:
    """Variance over the V = S + 1 views of the reference features and the plane-swept source features.

    variance = Σ_v volume_v² / V − (Σ_v volume_v / V)², per channel, accumulated view by view (never V volumes at
    once). Warped samples outside a source image are 0 (padding_mode zeros, as the original).

    The warp grid is computed from detached geometry, as in the original (its grid is built under no_grad):
    gradients reach the features, never the depth hypotheses or cameras (which carry no trainable parameter).

    Without gradients the sums are accumulated in place (inference). With gradients, `recompute=True` stores only
    the 2D features and re-warps in backward (`_RecomputedVariance`, ~3 volumes of memory), `recompute=False`
    keeps plain autograd, which stores every warped volume (V + 1 volumes, like the original's training path).

    Args:
        ref_features: (B, C, H, W); K_ref (B, 3, 3) for that grid.
        src_features: (B, S, C, Hs, Ws); K_src (B, S, 3, 3) for their grid; src_from_ref (B, S, 4, 4).
        depth_values: (B, D) fronto-parallel hypotheses (reference-camera depth).
    Returns:
        (B, C, D, H, W) variance volume.
    """
    if ref_features.dim() != 4:
        raise ValueError(f"ref_features must be (B, C, H, W), got {tuple(ref_features.shape)}")
    B, C, H, W = ref_features.shape
    if src_features.dim() != 5 or src_features.shape[:3] != (B, src_features.shape[1], C):
        raise ValueError(f"src_features must be ({B}, S, {C}, Hs, Ws), got {tuple(src_features.shape)}")
    S = src_features.shape[1]
    if depth_values.dim() != 2 or depth_values.shape[0] != B:
        raise ValueError(f"depth_values must be ({B}, D), got {tuple(depth_values.shape)}")
    for name, tensor, shape in (("K_ref", K_ref, (B, 3, 3)), ("K_src", K_src, (B, S, 3, 3)),
                                ("src_from_ref", src_from_ref, (B, S, 4, 4))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    dtype = depth_values.dtype
    hypotheses = depth_values.detach()[:, :, None, None].expand(-1, -1, H, W)
    sweep = _Sweep(hypotheses, K_ref.detach().to(dtype), K_src.detach().to(dtype), src_from_ref.detach().to(dtype))
    num_views = S + 1
    if not (torch.is_grad_enabled() and (ref_features.requires_grad or src_features.requires_grad)):
        total, sum_sq = _view_sums_in_place(ref_features, src_features, sweep, squares=True)
        return sum_sq.div_(num_views).sub_(total.div_(num_views).square_())
    if recompute:
        return _RecomputedVariance.apply(sweep, ref_features, src_features)
    total, sum_sq = ref_features.unsqueeze(2), ref_features.unsqueeze(2).square()  # broadcast over D
    for index in range(S):
        warped = sweep.warp(src_features[:, index], index)
        total = total + warped
        sum_sq = sum_sq + warped.square()
    return sum_sq / num_views - (total / num_views).square()


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
        checkpoint_cost_volume: recompute the warped volumes in backward instead of storing them
            (`build_cost_volume(recompute=...)`); default True — at DTU size it halves the peak memory and is
            no slower on a CPU (the extra warps cost less than the allocation they save; bench/bench_mvsnet.py).
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
        variance = build_cost_volume(features[0], torch.stack(features[1:], 1), K_features[:, 0], K_features[:, 1:],
                                     src_from_ref, depth_values, recompute=self.checkpoint_cost_volume)
        del features
        variance = variance.contiguous(memory_format=torch.channels_last_3d)
        cost = self.cost_regularization(variance).squeeze(1)
        del variance
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
