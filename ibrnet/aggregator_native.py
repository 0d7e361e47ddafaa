"""IBRNet's aggregator as compiled C kernels (ibrnet/aggregator_kernel.c), for the CPU.

`IBRNetAggregator` runs its per-view layers (ray_dir_fc, base_fc, vis_fc, vis_fc2, rgb_fc, the pooling
weights, both weighted mean/variances, the colour blend) layer by layer over all samples, so every
per-view activation streams through memory, and each op is a separate pass with its own overhead. The
C kernel runs all of them for 32 samples at a time while those samples' activations stay in cache, then
geometry_fc, the ray transformer and the density head ray by ray: the same math, float32. The aggregator
uses it when rendering without gradients on the CPU (`native_cpu_kernel`), projecting the samples into the
sources itself (`render_points`) or on the projector's arrays (`aggregate`). For training,
`per_view_layers_from_points` (the model's path) and `per_view_layers` (on the projector's arrays) run the
per-view part, up to geometry_fc's input, as autograd functions whose forward and backward passes are
kernels too, tile by tile: the forward pass keeps each tile's activations (about 0.5 MB per 32 samples with
10 views) for the backward pass, which computes the gradients of the feature maps (or of the projected
features and colours) and of every per-view parameter, s included.
tests/ibrnet/test_aggregator_native.py checks all of them against the PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from multiview.engine.cpu_threads import map_on_threads
from multiview.engine.native_library import NativeBuildError, load_c_library

KERNEL_SOURCE = Path(__file__).with_name("aggregator_kernel.c")


@functools.cache
def _kernel() -> ctypes.CDLL:
    library = load_c_library(KERNEL_SOURCE)
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    parameters_to_outputs = [pointer] * 3 + [ctypes.c_int] + [pointer] * 3  # params ... rgb, sigma, num_views
    library.ibrnet_aggregate.argtypes = [pointer] * 3 + [size] * 4 + parameters_to_outputs
    library.ibrnet_render_points.argtypes = ([pointer] * 6 + [size] * 2 + [pointer] + [size] * 6
                                             + parameters_to_outputs)
    sizes_and_params = [size] * 5 + [pointer, ctypes.c_int]  # V, C, P, begin, end, params, anti_alias_pooling
    library.ibrnet_per_view_forward.argtypes = [pointer] * 4 + sizes_and_params + [pointer] * 3
    library.ibrnet_per_view_forward_points.argtypes = ([pointer] * 6 + [size] * 2 + [pointer] + [size] * 2
                                                       + sizes_and_params + [pointer] * 4)
    library.ibrnet_per_view_backward.argtypes = sizes_and_params + [pointer] * 5 + [size] * 2 + [pointer] * 2
    library.ibrnet_per_view_saved_floats.argtypes = [size] * 3
    library.ibrnet_per_view_saved_floats.restype = size
    library.ibrnet_per_view_forward.restype = library.ibrnet_per_view_forward_points.restype = None
    for function in (library.ibrnet_aggregate, library.ibrnet_render_points, library.ibrnet_per_view_backward):
        function.restype = ctypes.c_int
    return library


@functools.cache
def available() -> bool:
    """Whether the kernel builds and loads here; if not, warns once with the compiler's complaint."""
    try:
        _kernel()
    except NativeBuildError as error:
        warnings.warn(f"{error}\nIBRNet renders with its PyTorch path instead (slower on the CPU); "
                      "--no-native_cpu_kernel silences this", RuntimeWarning, stacklevel=2)
        return False
    return True


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]).detach().to(torch.float32).contiguous()


def _per_view_layers(aggregator: nn.Module) -> list[nn.Linear]:
    """The Linear layers applied to every view (all but geometry_fc of the per-view part), in packed order."""
    return [aggregator.ray_dir_fc[0], aggregator.ray_dir_fc[2], aggregator.base_fc[0], aggregator.base_fc[2],
            aggregator.vis_fc[0], aggregator.vis_fc[2], aggregator.vis_fc2[0], aggregator.vis_fc2[2],
            aggregator.rgb_fc[0], aggregator.rgb_fc[2], aggregator.rgb_fc[4]]


def packed_parameters(aggregator: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights the kernel reads, flattened in its order (all ELUs have alpha 1, as the aggregator builds them).

    Per-view part: (weight, bias) of ray_dir_fc[0], [2], base_fc[0], [2], vis_fc[0], [2], vis_fc2[0], [2],
    rgb_fc[0], [2], [4], geometry_fc[0], [2], then s. Ray transformer: the q, k, v and output projections,
    the LayerNorm's weight and bias, (weight, bias) of out_geometry_fc[0], [2].
    """
    per_view = _per_view_layers(aggregator) + [aggregator.geometry_fc[0], aggregator.geometry_fc[2]]
    attention = aggregator.ray_attention
    transformer = [attention.w_qs.weight, attention.w_ks.weight, attention.w_vs.weight, attention.fc.weight,
                   attention.layer_norm.weight, attention.layer_norm.bias,
                   aggregator.out_geometry_fc[0].weight, aggregator.out_geometry_fc[0].bias,
                   aggregator.out_geometry_fc[2].weight, aggregator.out_geometry_fc[2].bias]
    return (_flat([t for layer in per_view for t in (layer.weight, layer.bias)] + [aggregator.s]),
            _flat(transformer))


def _weights(aggregator: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The weight tensors both kernel entry points read: the packed per-view and transformer parameters and
    the sample-index encoding (S, 16). The caller holds them while the kernel reads their data pointers."""
    return (*packed_parameters(aggregator), aggregator.pos_encoding.to(torch.float32).contiguous())


def _check(status: int, what: str) -> None:
    if status != 0:
        raise MemoryError(f"{KERNEL_SOURCE.name}: could not allocate its buffers for {what}")


def _float32_cpu(*tensors: torch.Tensor) -> list[torch.Tensor]:
    for tensor in tensors:
        if tensor.device.type != "cpu" or tensor.dtype != torch.float32:
            raise ValueError(f"the native kernel takes float32 CPU tensors, got {tensor.dtype} on {tensor.device}")
    return [tensor.contiguous() for tensor in tensors]


def aggregate(aggregator: nn.Module, feat_in: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor,
              num_rays: int, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The aggregator's forward pass on the projector's outputs, on the CPU, without autograd.

    Args (view-major, P = num_rays·num_samples samples, ray-major): feat_in (V, 3 + C, P) source colour ++
        feature, ray_diff (V, 4, P), mask (V, 1, P) of 0/1; float32 CPU tensors.
    Returns: rgb (P, 3) and sigma (P,).
    """
    feat_in, ray_diff, mask = _float32_cpu(feat_in, ray_diff, mask)
    V, C, P = feat_in.shape
    weights = _weights(aggregator)
    rgb, sigma, num_views = torch.empty(P, 3), torch.empty(P), torch.empty(P)
    _check(_kernel().ibrnet_aggregate(
        feat_in.data_ptr(), ray_diff.data_ptr(), mask.data_ptr(), V, C, num_rays, num_samples,
        *(weight.data_ptr() for weight in weights), int(aggregator.anti_alias_pooling),
        rgb.data_ptr(), sigma.data_ptr(), num_views.data_ptr()),
        f"{V} views, {num_rays} rays of {num_samples} samples")
    return rgb, sigma


def render_points(aggregator: nn.Module, points: torch.Tensor, target_center: torch.Tensor, images: torch.Tensor,
                  features: torch.Tensor, K: torch.Tensor, cam_from_world: torch.Tensor,
                  world_from_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`project_to_sources` followed by the aggregator, in one kernel call (no per-view arrays in memory).

    Args as `ibrnet.projector.project_to_sources`: points (R, S, 3), target_center (3,), images (V, 3, H, W),
        features (V, C, h, w), K (V, 3, 3), cam_from_world, world_from_cam (V, 4, 4); float32 CPU tensors.
    Returns: rgb (R, S, 3), sigma (R, S) and the number of source views that see each sample (R, S).
    """
    R, S, _ = points.shape
    V, _, H, W = images.shape
    _, channels, h, w = features.shape
    points, target_center, images, K, cam_from_world, source_centers = _float32_cpu(
        points, target_center, images, K, cam_from_world, world_from_cam[:, :3, 3])
    features_last = _float32_cpu(features)[0].permute(0, 2, 3, 1).contiguous()  # (V, h, w, C)
    weights = _weights(aggregator)
    rgb, sigma, num_views = torch.empty(R, S, 3), torch.empty(R, S), torch.empty(R, S)
    _check(_kernel().ibrnet_render_points(
        points.data_ptr(), target_center.data_ptr(), K.data_ptr(), cam_from_world.data_ptr(),
        source_centers.data_ptr(), images.data_ptr(), H, W, features_last.data_ptr(), h, w, V, 3 + channels, R, S,
        *(weight.data_ptr() for weight in weights), int(aggregator.anti_alias_pooling),
        rgb.data_ptr(), sigma.data_ptr(), num_views.data_ptr()),
        f"{V} views, {R} rays of {S} samples")
    return rgb, sigma, num_views


TILE = 32  # samples per tile in the kernel: the threads' ranges start at multiples of it


def _sample_ranges(num_samples: int) -> list[tuple[int, int]]:
    """Contiguous ranges of whole tiles, one per torch thread (ctypes releases the GIL: they run at once)."""
    tiles = -(-num_samples // TILE)
    workers = max(1, min(torch.get_num_threads(), tiles))
    bounds = [min(num_samples, TILE * (tiles * i // workers)) for i in range(workers + 1)]
    return [(begin, end) for begin, end in zip(bounds[:-1], bounds[1:]) if end > begin]


def _run_on_threads(call, ranges: list[tuple[int, int]]) -> list:
    """[call(begin, end) for each range], one range per thread (`map_on_threads`)."""
    return map_on_threads(lambda bounds: call(*bounds), ranges, len(ranges))


def _per_view_parameters(aggregator: nn.Module) -> list[torch.Tensor]:
    """What `per_view_layers` differentiates: (weight, bias) of each per-view layer in packed order, then s."""
    return [t for layer in _per_view_layers(aggregator) for t in (layer.weight, layer.bias)] + [aggregator.s]


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _training_forward(ctx, aggregator: nn.Module, V: int, C: int, P: int, parameters) -> tuple[torch.Tensor, ...]:
    """What both training forward passes set up: ctx's fields for the backward pass, the packed weights, the
    buffer of kept activations and the outputs pooled (P, 65) and rgb (P, 3)."""
    params = packed_parameters(aggregator)[0]
    ctx.save_for_backward(params)
    ctx.anti_alias, ctx.ranges = int(aggregator.anti_alias_pooling), _sample_ranges(P)
    ctx.shapes, ctx.shape = [t.shape for t in parameters], (V, C, P)
    ctx.activations = torch.empty(_kernel().ibrnet_per_view_saved_floats(V, C, P))  # kept for backward
    return params, ctx.activations, torch.empty(P, 65), torch.empty(P, 3)


def _training_backward(ctx, grad_pooled, grad_rgb, grad_feat_in=None, grad_colours=None, feature_maps=None):
    """ibrnet_per_view_backward over the threads' sample ranges. grad_feat_in (V, C, P) and grad_colours
    (V, 3, P) are filled if given; feature_maps (V, h, w, F) asks for the gradient of channels-last feature
    maps instead (each thread adds into its own, then they are summed). Returns the gradients of the
    Function's parameter inputs (None for s without anti-alias pooling, which does not use it, as in
    autograd) and that of the feature maps."""
    if ctx.activations is None:
        raise RuntimeError("backward through the aggregator's C kernel a second time: its activations were "
                           "freed by the first backward pass (retain_graph is not supported; "
                           "--no-native_cpu_kernel uses the PyTorch path)")
    (params,), (V, C, P) = ctx.saved_tensors, ctx.shape
    grad_pooled = torch.zeros(P, 65) if grad_pooled is None else grad_pooled.float().contiguous()
    grad_rgb = torch.zeros(P, 3) if grad_rgb is None else grad_rgb.float().contiguous()
    h, w = feature_maps[1:3] if feature_maps else (0, 0)

    def call(begin, end):
        grad_params = torch.zeros_like(params)
        grad_features = torch.zeros(feature_maps) if feature_maps else None
        status = _kernel().ibrnet_per_view_backward(
            V, C, P, begin, end, params.data_ptr(), ctx.anti_alias, grad_pooled.data_ptr(), grad_rgb.data_ptr(),
            _pointer(grad_feat_in), _pointer(grad_colours), _pointer(grad_features), h, w, grad_params.data_ptr(),
            ctx.activations.data_ptr())
        _check(status, f"{V} views, {P} samples")
        return grad_params, grad_features

    results = _run_on_threads(call, ctx.ranges)
    ctx.activations = None  # about 0.5 MB per 32 samples: freed now, not with the graph
    grad_params = torch.stack([result[0] for result in results]).sum(dim=0)
    sizes = [shape.numel() for shape in ctx.shapes[:-1]]  # geometry_fc's block sits between these and s
    grads = list(grad_params[:sum(sizes)].split(sizes)) + [grad_params[-1:] if ctx.anti_alias else None]
    grads = [None if grad is None else grad.view(shape) for grad, shape in zip(grads, ctx.shapes)]
    return grads, (sum(result[1] for result in results) if feature_maps else None)


class _PerViewLayers(torch.autograd.Function):
    """From the projector's arrays: (feat_in, colours, per-view parameters) -> (pooled, rgb), both passes in C."""

    @staticmethod
    def forward(ctx, aggregator, feat_in, ray_diff, mask, colours, *parameters):
        V, C, P = feat_in.shape
        params, activations, pooled, rgb = _training_forward(ctx, aggregator, V, C, P, parameters)
        _run_on_threads(lambda begin, end: _kernel().ibrnet_per_view_forward(
            feat_in.data_ptr(), ray_diff.data_ptr(), mask.data_ptr(), colours.data_ptr(), V, C, P, begin, end,
            params.data_ptr(), ctx.anti_alias, pooled.data_ptr(), rgb.data_ptr(), activations.data_ptr()), ctx.ranges)
        return pooled, rgb

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled, grad_rgb):
        V, C, P = ctx.shape
        grad_feat_in = torch.empty(V, C, P)
        grad_colours = torch.empty(V, 3, P) if ctx.needs_input_grad[4] else None
        grads, _ = _training_backward(ctx, grad_pooled, grad_rgb, grad_feat_in, grad_colours)
        return (None, grad_feat_in if ctx.needs_input_grad[1] else None, None, None, grad_colours, *grads)


class _PerViewLayersFromPoints(torch.autograd.Function):
    """From world points: (feature maps, per-view parameters) -> (pooled, rgb, num_views), the projection and
    the bilinear sampling in the kernels too (their backward scatters into the feature maps' gradient)."""

    @staticmethod
    def forward(ctx, aggregator, points, target_center, images, features, K, cam_from_world, source_centers,
                *parameters):
        (P, _), (V, _, H, W), (_, channels, h, w) = points.shape, images.shape, features.shape
        features_last = features.permute(0, 2, 3, 1).contiguous()  # (V, h, w, F)
        params, activations, pooled, rgb = _training_forward(ctx, aggregator, V, 3 + channels, P, parameters)
        num_views = torch.empty(P)
        _run_on_threads(lambda begin, end: _kernel().ibrnet_per_view_forward_points(
            points.data_ptr(), target_center.data_ptr(), K.data_ptr(), cam_from_world.data_ptr(),
            source_centers.data_ptr(), images.data_ptr(), H, W, features_last.data_ptr(), h, w, V, 3 + channels, P,
            begin, end, params.data_ptr(), ctx.anti_alias, pooled.data_ptr(), rgb.data_ptr(), num_views.data_ptr(),
            activations.data_ptr()), ctx.ranges)
        ctx.mark_non_differentiable(num_views)
        ctx.feature_maps = features_last.shape
        return pooled, rgb, num_views

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled, grad_rgb, _):
        grads, grad_features = _training_backward(ctx, grad_pooled, grad_rgb, feature_maps=ctx.feature_maps)
        return (None, None, None, None, grad_features.permute(0, 3, 1, 2) if ctx.needs_input_grad[4] else None,
                None, None, None, *grads)


def per_view_layers(aggregator: nn.Module, feat_in: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor,
                    colours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The aggregator's per-view part with autograd, both passes in the kernel, on the CPU in float32.

    Args (view-major, P samples): feat_in (V, 3 + C, P) source colour ++ feature, ray_diff (V, 4, P), mask
        (V, 1, P) of 0/1, colours (V, 3, P) (the colours blended); ray_diff and mask get no gradient.
    Returns: pooled (P, 65) = [mean, variance, mean weight] over the views (geometry_fc's input) and rgb (P, 3).
    """
    feat_in, ray_diff, mask, colours = _float32_cpu(feat_in, ray_diff, mask, colours)
    return _PerViewLayers.apply(aggregator, feat_in, ray_diff, mask, colours, *_per_view_parameters(aggregator))


def per_view_layers_from_points(aggregator: nn.Module, points: torch.Tensor, target_center: torch.Tensor,
                                images: torch.Tensor, features: torch.Tensor, K: torch.Tensor,
                                cam_from_world: torch.Tensor, world_from_cam: torch.Tensor):
    """`project_to_sources` followed by `per_view_layers`, in the kernels (no per-view arrays in memory).

    Args as `ibrnet.projector.project_to_sources` (points (R, S, 3) ... world_from_cam (V, 4, 4)), float32 CPU
        tensors; only the feature maps get a gradient.
    Returns: pooled (R·S, 65), rgb (R·S, 3) and the number of source views that see each sample (R·S,).
    """
    points, target_center, images, features, K, cam_from_world, source_centers = _float32_cpu(
        points.reshape(-1, 3), target_center, images, features, K, cam_from_world, world_from_cam[:, :3, 3])
    return _PerViewLayersFromPoints.apply(aggregator, points, target_center, images, features, K, cam_from_world,
                                          source_centers, *_per_view_parameters(aggregator))
