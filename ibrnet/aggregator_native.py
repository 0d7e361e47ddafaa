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
def _kernel():
    library = load_c_library(KERNEL_SOURCE)
    function = library.ibrnet_aggregate
    function.restype = ctypes.c_int
    function.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 4 + [ctypes.c_void_p] * 3
                         + [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p])
    return function


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


def aggregate(aggregator: nn.Module, feat_in: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor,
              num_rays: int, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The aggregator's forward pass on the CPU, without autograd.

    Args (view-major, P = num_rays·num_samples samples, ray-major): feat_in (V, 3 + C, P) source colour ++
        feature, ray_diff (V, 4, P), mask (V, 1, P) of 0/1; float32 CPU tensors.
    Returns: rgb (P, 3) and sigma (P,).
    """
    if feat_in.device.type != "cpu" or feat_in.dtype != torch.float32:
        raise ValueError(f"the native kernel takes float32 CPU tensors, got {feat_in.dtype} on {feat_in.device}")
    V, C, P = feat_in.shape
    feat_in, ray_diff, mask = feat_in.contiguous(), ray_diff.contiguous(), mask.contiguous()
    per_view, transformer = packed_parameters(aggregator)
    position = aggregator.pos_encoding.to(torch.float32).contiguous()
    rgb, sigma = torch.empty(P, 3), torch.empty(P)
    status = _kernel()(feat_in.data_ptr(), ray_diff.data_ptr(), mask.data_ptr(), V, C, num_rays, num_samples,
                       per_view.data_ptr(), transformer.data_ptr(), position.data_ptr(),
                       int(aggregator.anti_alias_pooling), rgb.data_ptr(), sigma.data_ptr())
    if status != 0:
        raise MemoryError(f"{KERNEL_SOURCE.name}: could not allocate its buffers ({V} views, {C} channels, "
                          f"{num_rays} rays of {num_samples} samples)")
    return rgb, sigma
