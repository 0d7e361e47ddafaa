"""The aggregator's per-view layers in one compiled C kernel (ibrnet/per_view_kernel.c), for CPU rendering.

`IBRNetAggregator` runs its per-view layers (ray_dir_fc, base_fc, vis_fc, vis_fc2, rgb_fc, the pooling
weights, both weighted mean/variances, the colour blend) and geometry_fc layer by layer over all samples,
so every per-view activation streams through memory, and each op is a separate pass with its own
overhead. The C kernel runs all of them for 32 samples at a time while those samples' activations stay
in cache: the same math, forward only (no autograd), float32; the ray transformer and the density head
stay in PyTorch. The aggregator uses it when rendering without gradients
on the CPU (`native_cpu_kernel`); tests/ibrnet/test_per_view_native.py checks it against the PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from multiview.engine.native_library import NativeBuildError, load_c_library

KERNEL_SOURCE = Path(__file__).with_name("per_view_kernel.c")


@functools.cache
def _kernel():
    library = load_c_library(KERNEL_SOURCE)
    function = library.ibrnet_per_view_forward
    function.restype = ctypes.c_int
    function.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3
                         + [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p])
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


def packed_parameters(aggregator: nn.Module) -> torch.Tensor:
    """The weights the kernel reads, flattened in its order: (weight, bias) of ray_dir_fc[0], [2],
    base_fc[0], [2], vis_fc[0], [2], vis_fc2[0], [2], rgb_fc[0], [2], [4], geometry_fc[0], [2], then s;
    float32."""
    layers = [aggregator.ray_dir_fc[0], aggregator.ray_dir_fc[2], aggregator.base_fc[0], aggregator.base_fc[2],
              aggregator.vis_fc[0], aggregator.vis_fc[2], aggregator.vis_fc2[0], aggregator.vis_fc2[2],
              aggregator.rgb_fc[0], aggregator.rgb_fc[2], aggregator.rgb_fc[4],
              aggregator.geometry_fc[0], aggregator.geometry_fc[2]]
    parts = [tensor.reshape(-1) for layer in layers for tensor in (layer.weight, layer.bias)]
    return torch.cat([*parts, aggregator.s.reshape(1)]).detach().to(torch.float32).contiguous()


def per_view_forward(aggregator: nn.Module, feat_in: torch.Tensor, ray_diff: torch.Tensor, mask: torch.Tensor):
    """The aggregator's per-view part and geometry_fc on the CPU, without autograd.

    Args (view-major, P samples): feat_in (V, 3 + C, P) source colour ++ feature, ray_diff (V, 4, P),
        mask (V, 1, P) of 0/1; float32 CPU tensors.
    Returns, sample-major: geometry_fc's output (P, 16) and the blended colour (P, 3).
    """
    if feat_in.device.type != "cpu" or feat_in.dtype != torch.float32:
        raise ValueError(f"the native kernel takes float32 CPU tensors, got {feat_in.dtype} on {feat_in.device}")
    V, C, P = feat_in.shape
    feat_in, ray_diff, mask = feat_in.contiguous(), ray_diff.contiguous(), mask.contiguous()
    parameters = packed_parameters(aggregator)
    geometry, rgb = torch.empty(P, 16), torch.empty(P, 3)
    status = _kernel()(feat_in.data_ptr(), ray_diff.data_ptr(), mask.data_ptr(), V, C, P, parameters.data_ptr(),
                       int(aggregator.anti_alias_pooling), geometry.data_ptr(), rgb.data_ptr())
    if status != 0:
        raise MemoryError(f"{KERNEL_SOURCE.name}: could not allocate its tile buffers ({V} views, {C} channels)")
    return geometry, rgb
