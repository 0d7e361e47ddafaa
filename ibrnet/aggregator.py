"""Aggregators: per-view features of each ray sample -> the sample's colour and density.

Interface (`Aggregator.forward`): rgb_feat (R, S, V, 3 + C) = sampled source colour ++ feature,
ray_diff (R, S, V, 4), mask (R, S, V) bool -> rgb (R, S, 3), sigma (R, S).

`IBRNetAggregator` is the original's `IBRNet` module (ibrnet/mlp_network.py) with identical
parameters, names and math; its ray transformer runs on `F.scaled_dot_product_attention` (fused
kernels on CUDA) and `reference_attention` keeps the explicit softmax(QKᵀ/√d)V for tests.

How it is fast (same math; tests/ibrnet/test_reference_equivalence.py checks outputs and gradients
against a line-by-line re-statement of the original in float64): the per-view work runs on
view-major (V, C, P = R·S) tensors — the projector stores its outputs that way, so the (R, S, V, C)
arguments are permuted views and need no copy — where each Linear is one batched GEMM over all
samples, sums over views are sums of contiguous slabs and per-view scalars broadcast along channels;
first layers whose input the original concatenates ([mean, var, feat] for base_fc, [x, vis, ray_diff]
for rgb_fc) are split by input blocks instead (the mean/var block once per sample, not per view);
activations run in place on fresh GEMM outputs; the weighted mean/variance has a hand-written backward
that keeps no (x − mean)-sized temporaries; vis_fc's last layer is split by output rows instead of
slicing its result. On the CPU in float32, compiled C kernels (`ibrnet.aggregator_native`) replace
this path, the per-view layers tile by tile in cache: the whole forward pass when rendering without
gradients, and the per-view part (up to geometry_fc's input) with its backward pass when training.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ibrnet import aggregator_native


class Aggregator(nn.Module):
    """Base class: see the module docstring for the shapes.

    `colours` (R, S, V, 3), optional, holds the values of rgb_feat[..., :3] as a tensor of its own (the
    projector's); an aggregator that blends source colours may use it so that its gradient does not
    have to go through a slice of rgb_feat.
    """

    def forward(self, rgb_feat: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor,
                colours: torch.Tensor | None = None):
        raise NotImplementedError


def sinusoidal_encoding(num_positions: int, channels: int) -> torch.Tensor:
    """(num_positions, channels): PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(same angle)."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = 2.0 * (torch.arange(channels) // 2).to(torch.float64) / channels
    angle = position / torch.pow(10000.0, exponent)
    table = torch.where(torch.arange(channels) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class _WeightedMeanVariance(torch.autograd.Function):
    """mean = Σ_v w_v x_v and var = Σ_v w_v (x_v − mean)² over axis 0, with a hand-written backward.

    The same formulas as the original's `fused_mean_variance`; autograd of that formula would keep
    (x − mean) and its square, two tensors as large as x, for the backward pass. This keeps only x, w
    and mean, and recomputes x − mean in the backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor):
        mean = (x * weight).sum(dim=0)
        centred = x - mean
        variance = centred.square_().mul_(weight).sum(dim=0)
        ctx.save_for_backward(x, weight, mean)
        return mean, variance

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_mean: torch.Tensor, grad_variance: torch.Tensor):
        x, weight, mean = ctx.saved_tensors
        centred = x - mean
        # ∂var/∂x_v = 2 w_v (x_v − mean) − 2 w_v Σ_u w_u (x_u − mean); ∂mean/∂x_v = w_v
        grad_centred = centred * weight
        grad_centred.mul_(2.0 * grad_variance)
        grad_mean = grad_mean - grad_centred.sum(dim=0)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:
            # ∂mean/∂w_v = x_v; ∂var/∂w_v = (x_v − mean)² − 2 x_v Σ_u w_u (x_u − mean), summed over channels
            grad_weight = (centred.square_().mul_(grad_variance).addcmul_(x, grad_mean)).sum(dim=1, keepdim=True)
        if ctx.needs_input_grad[0]:
            grad_x = grad_centred.addcmul_(grad_mean, weight)
        return grad_x, grad_weight


def weighted_mean_variance(x: torch.Tensor, weight: torch.Tensor):
    """Over the view axis 0 of view-major tensors: x (V, C, P), weight (V, 1, P) -> mean, var (C, P).

    mean = Σ_v w_v·x_v, var = Σ_v w_v·(x_v − mean)² (the original's `fused_mean_variance`).
    """
    return _WeightedMeanVariance.apply(x, weight)


def _view_major(t: torch.Tensor) -> torch.Tensor:
    """(R, S, V, C) -> (V, C, R·S); a view when `t` is stored view-major (as the projector makes it)."""
    R, S, V, C = t.shape
    return t.permute(2, 3, 0, 1).reshape(V, C, R * S)


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear on the channel axis 1 of a view-major (V, K, P) tensor -> (V, O, P): one batched GEMM."""
    out = torch.bmm(layer.weight.expand(x.shape[0], -1, -1), x)
    return out if layer.bias is None else out.add_(layer.bias[:, None])


def _mlp(sequential: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run an nn.Sequential of Linear / ELU / ReLU / Sigmoid on view-major (V, K, P) tensors.

    Activations are applied in place on the fresh GEMM outputs (their backward needs only the
    result), so each layer keeps one (V, O, P) tensor alive for the backward pass, not two.
    """
    for layer in sequential:
        if isinstance(layer, nn.Linear):
            x = _linear(layer, x)
        elif isinstance(layer, nn.ELU):
            x = F.elu_(x, layer.alpha)
        elif isinstance(layer, nn.ReLU):
            x = F.relu_(x)
        elif isinstance(layer, nn.Sigmoid):
            x = torch.sigmoid_(x)
        else:
            raise TypeError(f"unsupported layer {layer}")
    return x


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v, written out; (..., L, d) inputs."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


class RayAttention(nn.Module):
    """The original's single MultiHeadAttention layer over the samples of a ray.

    q/k/v/out projections without bias, scaled dot product with temperature √d_k, residual and
    post-LayerNorm (eps 1e-6), no feed-forward, no dropout. Masking semantics of the original: its
    mask (R, S, 1) broadcast over the key axis masks whole *query rows* — a sample seen by <= 1 view
    attends uniformly to all samples (mean of the values); keys are never masked.
    """

    def __init__(self, d_model: int = 16, num_heads: int = 4, use_sdpa: bool = True):
        super().__init__()
        self.num_heads, self.d_head = num_heads, d_model // num_heads
        self.use_sdpa = use_sdpa
        self.w_qs = nn.Linear(d_model, d_model, bias=False)
        self.w_ks = nn.Linear(d_model, d_model, bias=False)
        self.w_vs = nn.Linear(d_model, d_model, bias=False)
        self.fc = nn.Linear(d_model, d_model, bias=False)
        self.layer_norm = nn.LayerNorm(d_model, eps=1e-6)

    def forward(self, x: torch.Tensor, query_valid: torch.Tensor) -> torch.Tensor:
        """x (R, S, d_model), query_valid (R, S) bool -> (R, S, d_model)."""
        R, S, _ = x.shape

        def heads(t):
            return t.reshape(R, S, self.num_heads, self.d_head).transpose(1, 2)  # (R, H, S, d)

        q, k, v = heads(self.w_qs(x)), heads(self.w_ks(x)), heads(self.w_vs(x))
        attended = F.scaled_dot_product_attention(q, k, v) if self.use_sdpa else reference_attention(q, k, v)
        uniform = v.mean(dim=2, keepdim=True).expand_as(attended)
        attended = torch.where(query_valid[:, None, :, None], attended, uniform)
        out = self.fc(attended.transpose(1, 2).reshape(R, S, -1))
        return self.layer_norm(out + x)


class IBRNetAggregator(Aggregator):
    """IBRNet's aggregator (20,136 parameters with 32-d features), faithful to the original.

    Args:
        feature_channels: C of the sampled feature maps (32).
        num_samples: samples per ray — the sinusoidal sample-index encoding ties the net to it
            (64 for the coarse net, 128 for the fine net), as in the original.
        anti_alias_pooling: IBRNet's view weights exp(|s|(cos − 1)) minus their minimum over views.
        use_sdpa: ray attention through F.scaled_dot_product_attention (else the reference path).
        native_cpu_kernel: on the CPU in float32, run the compiled C kernels of `ibrnet.aggregator_native`
            (same math, activations kept in cache): without autograd the whole forward pass, with autograd
            the per-view layers' forward and backward passes.
    """

    def __init__(self, feature_channels: int = 32, num_samples: int = 64, anti_alias_pooling: bool = True,
                 use_sdpa: bool = True, native_cpu_kernel: bool = True):
        super().__init__()
        c = feature_channels + 3
        self.anti_alias_pooling, self.native_cpu_kernel = anti_alias_pooling, native_cpu_kernel
        self.ray_dir_fc = nn.Sequential(nn.Linear(4, 16), nn.ELU(), nn.Linear(16, c), nn.ELU())
        self.base_fc = nn.Sequential(nn.Linear(3 * c, 64), nn.ELU(), nn.Linear(64, 32), nn.ELU())
        self.vis_fc = nn.Sequential(nn.Linear(32, 32), nn.ELU(), nn.Linear(32, 33), nn.ELU())
        self.vis_fc2 = nn.Sequential(nn.Linear(32, 32), nn.ELU(), nn.Linear(32, 1), nn.Sigmoid())
        self.geometry_fc = nn.Sequential(nn.Linear(2 * 32 + 1, 64), nn.ELU(), nn.Linear(64, 16), nn.ELU())
        self.ray_attention = RayAttention(16, 4, use_sdpa)
        self.out_geometry_fc = nn.Sequential(nn.Linear(16, 16), nn.ELU(), nn.Linear(16, 1), nn.ReLU())
        self.rgb_fc = nn.Sequential(nn.Linear(32 + 1 + 4, 16), nn.ELU(), nn.Linear(16, 8), nn.ELU(), nn.Linear(8, 1))
        self.s = nn.Parameter(torch.tensor(0.2))
        self.register_buffer("pos_encoding", sinusoidal_encoding(num_samples, 16), persistent=False)
        for module in (self.base_fc, self.vis_fc, self.vis_fc2, self.geometry_fc, self.rgb_fc):
            for layer in module:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_normal_(layer.weight)
                    nn.init.zeros_(layer.bias)

    def _view_weights(self, ray_diff: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(V, 1, P) pooling weights; the min is over all views, so the least aligned gets 0."""
        if not self.anti_alias_pooling:
            return mask / (mask.sum(dim=0, keepdim=True) + 1e-8)
        aligned = torch.exp(self.s.abs() * (ray_diff[:, 3:] - 1.0))
        weight = (aligned - aligned.min(dim=0, keepdim=True).values) * mask  # min's gradient: as the original
        return weight / (weight.sum(dim=0, keepdim=True) + 1e-8)

    def _base_features(self, feat: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """base_fc([mean, var, feat]) without materialising the per-view concatenation.

        The first Linear is split by input blocks: the mean/var part is computed once per sample
        (C, P) and broadcast over views — the same affine map as the original's expand + cat.
        """
        first = self.base_fc[0]
        c = feat.shape[1]
        w_mean, w_var, w_feat = first.weight.split(c, dim=1)
        per_sample = torch.addmm(first.bias[:, None], w_mean, mean).addmm_(w_var, variance)  # (64, P)
        hidden = torch.bmm(w_feat.expand(feat.shape[0], -1, -1), feat).add_(per_sample)
        return _mlp(self.base_fc[1:], hidden)

    def _blend_logits(self, x: torch.Tensor, vis: torch.Tensor, ray_diff: torch.Tensor) -> torch.Tensor:
        """rgb_fc([x, vis, ray_diff]) (V, 1, P), the first Linear split by input blocks (no concatenation)."""
        first = self.rgb_fc[0]
        w_x, w_vis, w_diff = first.weight.split([x.shape[1], 1, ray_diff.shape[1]], dim=1)
        V = x.shape[0]
        hidden = torch.bmm(w_x.expand(V, -1, -1), x).baddbmm_(w_diff.expand(V, -1, -1), ray_diff)
        hidden = hidden.addcmul_(w_vis[None], vis).add_(first.bias[:, None])
        return _mlp(self.rgb_fc[1:], hidden)

    def _visibility(self, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor):
        """vis_fc(x·w) split into the residual (32) and the visibility logit (1) by splitting its last Linear.

        Two GEMMs on the row blocks of the last weight give the same values as one GEMM and a slice, and
        the backward needs no zero-filled slice gradients.
        """
        hidden = _mlp(self.vis_fc[:2], x * weight)
        last = self.vis_fc[2]
        w_res, w_logit = last.weight.split([last.out_features - 1, 1], dim=0)
        b_res, b_logit = last.bias.split([last.out_features - 1, 1], dim=0)
        V = x.shape[0]
        x_res = F.elu_(torch.bmm(w_res.expand(V, -1, -1), hidden).add_(b_res[:, None]), self.vis_fc[3].alpha)
        logit = F.elu_(torch.bmm(w_logit.expand(V, -1, -1), hidden).add_(b_logit[:, None]), self.vis_fc[3].alpha)
        return x_res, torch.sigmoid(logit) * mask

    def _per_view(self, feat_in: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor,
                  colours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-view layers and geometry_fc on view-major (V, ·, P) tensors -> (P, 16) and rgb (P, 3).

        geometry_fc's input is [weighted mean, weighted variance, mean weight over views] of the per-view
        features after the visibility layers; rgb is the softmax blend of `colours` (V, 3, P).
        """
        if self.uses_native_training_kernel(feat_in, ray_diff, mask):
            pooled, rgb = aggregator_native.per_view_layers(self, feat_in, ray_diff, mask, colours)
            return self.geometry_fc(pooled), rgb
        feat = feat_in + _mlp(self.ray_dir_fc, ray_diff)
        weight = self._view_weights(ray_diff, mask)
        mean, variance = weighted_mean_variance(feat, weight)  # (3 + C, P)
        x = self._base_features(feat, mean, variance)  # (V, 32, P)

        x_res, vis = self._visibility(x, weight, mask)
        x = x + x_res
        vis = _mlp(self.vis_fc2, x * vis) * mask  # vis_fc2 ends with a sigmoid
        weight = vis / (vis.sum(dim=0, keepdim=True) + 1e-8)
        mean, variance = weighted_mean_variance(x, weight)  # (32, P)
        geometry = self.geometry_fc(torch.cat([mean, variance, weight.mean(dim=0)], dim=0).t())

        logits = self._blend_logits(x, vis, ray_diff).masked_fill(mask == 0, -1e9)
        blend = torch.softmax(logits, dim=0)  # over views
        return geometry, (colours * blend).sum(dim=0).t()

    def _native_kernels_apply(self, inputs: torch.Tensor) -> bool:
        """Enabled, `inputs` on the CPU in float32, and the kernels build here (checked last: it may warn)."""
        return (self.native_cpu_kernel and inputs.device.type == "cpu" and inputs.dtype == torch.float32
                and aggregator_native.available())

    def uses_native_kernel(self, inputs: torch.Tensor) -> bool:
        """Whether a forward pass on `inputs` runs as the C kernel: CPU, float32, no autograd, enabled, built."""
        return not torch.is_grad_enabled() and self._native_kernels_apply(inputs)

    def uses_native_training_kernel(self, inputs: torch.Tensor, *without_gradient: torch.Tensor) -> bool:
        """Whether the per-view part runs as the C kernels with autograd (`aggregator_native.per_view_layers`
        and `per_view_layers_from_points`): autograd on, `inputs` on the CPU in float32, enabled, built, and no
        gradient wanted for the tensors `without_gradient` (ray differences and masks, or points and images)."""
        return (torch.is_grad_enabled() and not any(t.requires_grad for t in without_gradient)
                and self._native_kernels_apply(inputs))

    def forward_from_points(self, points: torch.Tensor, target_center: torch.Tensor, images: torch.Tensor,
                            features: torch.Tensor, K: torch.Tensor, cam_from_world: torch.Tensor,
                            world_from_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training on the CPU: `project_to_sources` and the per-view part in the C kernels (gradients reach
        the feature maps through them), geometry_fc and the density in PyTorch.

        Args as `ibrnet.projector.project_to_sources` (points (R, S, 3) world points ...). Returns rgb (R, S, 3),
        sigma (R, S) and the number of source views that see each sample (R, S).
        """
        R, S, _ = points.shape
        self._check_samples_per_ray(S)
        pooled, rgb, num_views = aggregator_native.per_view_layers_from_points(
            self, points, target_center, images, features, K, cam_from_world, world_from_cam)
        num_views = num_views.reshape(R, S)
        return rgb.reshape(R, S, 3), self._density(self.geometry_fc(pooled).reshape(R, S, -1), num_views), num_views

    def _check_samples_per_ray(self, num_samples: int) -> None:
        if self.pos_encoding.shape[0] != num_samples:
            raise ValueError(f"this aggregator was built for {self.pos_encoding.shape[0]} samples per ray "
                             f"(its sample-index encoding), got {num_samples}")

    def _density(self, geometry: torch.Tensor, num_valid: torch.Tensor) -> torch.Tensor:
        """geometry (R, S, 16) from geometry_fc, num_valid (R, S) views that see each sample -> sigma (R, S):
        the sample-index encoding, the ray transformer and the density head (0 where no view sees the sample)."""
        globalfeat = self.ray_attention(geometry + self.pos_encoding.to(geometry.dtype), num_valid > 1)
        return self.out_geometry_fc(globalfeat).squeeze(-1).masked_fill(num_valid < 1, 0.0)

    def forward(self, rgb_feat: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor,
                colours: torch.Tensor | None = None):
        """See `Aggregator`; `colours` (the values of rgb_feat[..., :3]) are the colours blended."""
        R, S, V, _ = rgb_feat.shape
        self._check_samples_per_ray(S)
        if ray_diff.shape != (R, S, V, 4) or mask.shape != (R, S, V):
            raise ValueError(f"expected ray_diff {(R, S, V, 4)} and mask {(R, S, V)}, "
                             f"got {tuple(ray_diff.shape)} and {tuple(mask.shape)}")
        # Everything per view runs on view-major (V, C, P = R·S) tensors: each Linear is one batched
        # GEMM over all samples, reductions over views are sums of contiguous slabs, and per-view
        # scalars (weights, masks) broadcast along the channel axis.
        feat_in = _view_major(rgb_feat)  # (V, 3 + C, P)
        ray_diff = _view_major(ray_diff)  # (V, 4, P)
        mask = mask.permute(2, 0, 1).reshape(V, 1, R * S).to(rgb_feat.dtype)  # (V, 1, P)
        if self.uses_native_kernel(feat_in):
            rgb, sigma = aggregator_native.aggregate(self, feat_in, ray_diff, mask, R, S)
            return rgb.reshape(R, S, 3), sigma.reshape(R, S)
        colours = feat_in[:, :3] if colours is None else _view_major(colours)
        geometry, rgb = self._per_view(feat_in, ray_diff, mask, colours)
        sigma = self._density(geometry.reshape(R, S, -1), mask.sum(dim=0).reshape(R, S))
        return rgb.reshape(R, S, 3), sigma
