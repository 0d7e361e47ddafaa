"""Device choice and mixed precision: `--device auto|cpu|cuda`, autocast + GradScaler only on CUDA."""

from __future__ import annotations

import contextlib

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
