"""Device helpers: resolving --device, and `reuse_freed_memory` (checked in a child process, since it changes the
C heap of the whole process)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from multiview.engine.device import resolve_device

# A "training step" that allocates, touches and frees three 64 MB tensors; prints the fewest minor page faults of
# steps 4-8 (the heap needs a few steps to settle).
_FAULTS_OF_A_REPEATED_STEP = """
import resource, sys, torch
from multiview.engine.device import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def step():
    a = torch.ones(16 * 2**20)
    return ((a * 2) + a).sum()
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[3:]))
"""


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", _FAULTS_OF_A_REPEATED_STEP, mode], capture_output=True, text=True,
                            check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")
def test_reused_memory_is_not_page_faulted_again():
    pages = 3 * 64 * 2**20 // 4096  # 49152 pages of 4 KiB
    assert _faults("default") > pages // 2  # glibc maps blocks this large fresh each time
    assert _faults("reuse") < pages // 100


def test_cpu_resolves_everywhere_and_cuda_without_cuda_is_a_clear_error():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="--device cuda was requested"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="--device must be"):
        resolve_device("gpu")
