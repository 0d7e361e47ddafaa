"""torchrun-based data parallelism: one code path for world size 1 and N.

torchrun sets LOCAL_RANK/RANK/WORLD_SIZE; without them the process is rank 0 of 1 and no process
group is created. CUDA uses NCCL, CPU uses gloo (how the tests run two processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistributedContext:
    """Create the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    context = DistributedContext(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if context.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return context


def wrap_model(model: torch.nn.Module, context: DistributedContext, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel when world size > 1, the model itself otherwise."""
    if not context.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Mean of a tensor over ranks (identity at world size 1)."""
    if context.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= context.world_size
    return value


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
