"""Device choice and mixed precision: `--device auto|cpu|cuda`, autocast + GradScaler only on CUDA."""

from __future__ import annotations

import contextlib
import ctypes

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available, else cpu; 'cuda' without CUDA is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False on this machine")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def reuse_freed_memory() -> bool:
    """Keep memory freed by torch in the C heap for reuse instead of returning it to the OS (glibc only).

    With glibc's defaults every block above its mmap threshold (at most 32 MB) is mapped fresh and
    returned on free, so a training step on the CPU page-faults and zeroes its large activations again
    every step: for the IBRNet step of bench/bench_ibrnet.py that is about 3 s of system time.
    mallopt(M_MMAP_MAX, 0) serves every block from the heap and mallopt(M_TRIM_THRESHOLD, -1) never
    shrinks it, so the next step reuses the same pages; the process's resident size then stays at its
    peak. Returns False (and changes nothing) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, -1))


def configure_cpu(device: torch.device, num_threads: int, reuse_memory: bool) -> None:
    """Apply the device options that concern the CPU process: torch threads (0 = keep torch's default)
    and, when `device` is the CPU, `reuse_freed_memory` (on CUDA the activations are not in the C heap)."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if reuse_memory and device.type == "cpu":
        reuse_freed_memory()


class Precision:
    """Autocast context and gradient scaler for one device (both no-ops on CPU or with --no-amp)."""

    def __init__(self, device: torch.device, enabled: bool, dtype_name: str = "bf16"):
        self.enabled = enabled and device.type == "cuda"
        self.dtype = AMP_DTYPES[dtype_name]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
