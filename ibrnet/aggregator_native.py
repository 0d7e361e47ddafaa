"""IBRNet's aggregator as one compiled C kernel (ibrnet/aggregator_kernel.c), for rendering on the CPU.

`IBRNetAggregator` runs its per-view layers (ray_dir_fc, base_fc, vis_fc, vis_fc2, rgb_fc, the pooling
weights, both weighted mean/variances, the colour blend) layer by layer over all samples, so every
per-view activation streams through memory, and each op is a separate pass with its own overhead. The
C kernel runs all of them for 32 samples at a time while those samples' activations stay in cache, then
geometry_fc, the ray transformer and the density head ray by ray: the same math, forward only (no
autograd), float32. The aggregator uses it when rendering without gradients on the CPU
(`native_cpu_kernel`); tests/ibrnet/test_aggregator_native.py checks it against the PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import torch
import torch.nn as nn

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
    for function in (library.ibrnet_aggregate, library.ibrnet_render_points):
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


def packed_parameters(aggregator: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights the kernel reads, flattened in its order (all ELUs have alpha 1, as the aggregator builds them).

    Per-view part: (weight, bias) of ray_dir_fc[0], [2], base_fc[0], [2], vis_fc[0], [2], vis_fc2[0], [2],
    rgb_fc[0], [2], [4], geometry_fc[0], [2], then s. Ray transformer: the q, k, v and output projections,
    the LayerNorm's weight and bias, (weight, bias) of out_geometry_fc[0], [2].
    """
    per_view = [aggregator.ray_dir_fc[0], aggregator.ray_dir_fc[2], aggregator.base_fc[0], aggregator.base_fc[2],
                aggregator.vis_fc[0], aggregator.vis_fc[2], aggregator.vis_fc2[0], aggregator.vis_fc2[2],
                aggregator.rgb_fc[0], aggregator.rgb_fc[2], aggregator.rgb_fc[4],
                aggregator.geometry_fc[0], aggregator.geometry_fc[2]]
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
