"""Checkpoints: written atomically, holding everything needed to resume bit-for-bit.

Layout: <run>/ckpt/step_XXXXXXX.pt plus <run>/ckpt/latest.pt (a full copy). Each file holds the
model, optimizer, scheduler, scaler, step, the run's options and the RNG states of python, numpy,
torch (CPU and CUDA). Writes go to a temporary file in the same directory, then `os.replace`.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, scaler, options: dict,
                    extra: dict | None = None, keep: int = 3) -> Path:
    """Write step_XXXXXXX.pt and latest.pt; keep only the `keep` newest numbered checkpoints."""
    ckpt_dir = Path(run_dir) / "ckpt"
    state = {
        "step": step,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "options": options,
        "rng": rng_state(),
        "extra": extra or {},
    }
    path = ckpt_dir / f"step_{step:07d}.pt"
    atomic_save(state, path)
    atomic_save(state, ckpt_dir / "latest.pt")
    numbered = sorted(ckpt_dir.glob("step_*.pt"))
    for old in numbered[: max(0, len(numbered) - keep)]:
        old.unlink()
    return path


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint file with a clear error when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:
        raise ValueError(f"{path}: cannot read checkpoint ({type(error).__name__}: {error})") from error


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Initialise from a checkpoint's model weights only (finetuning); key mismatches are errors."""
    state = load_checkpoint(path)
    weights = state["model"] if isinstance(state, dict) and "model" in state else state
    missing, unexpected = unwrap(model).load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
