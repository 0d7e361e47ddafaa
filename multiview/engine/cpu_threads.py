"""Run independent pieces of no-grad CPU work on worker threads, each piece's ops on one thread.

Why: torch parallelises each CPU op over its intra-op threads, which pays for large tensors but not
for the many small ones of a rendering slice (per-sample tensors of a few thousand elements stay on
one thread, and every op pays a fork/join). Rendering slices are independent, so giving each core a
slice of its own and running its ops single-threaded keeps both cores busier: on the 2-core development
machine IBRNet's rendering benchmark went from 284–286 to 321–329 rays/s that way (2026-12-06, README,
Benchmarks). torch's ops release the GIL, so Python threads suffice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def _single_threaded_ops() -> None:
    torch.set_num_threads(1)  # intra-op threads are per calling thread (OpenMP/MKL), set here per worker


def map_on_threads(function: Callable[[Item], Result], items: Iterable[Item], workers: int) -> list[Result]:
    """[function(item) for item in items] under torch.no_grad, on `workers` threads (in order).

    Each worker runs torch ops on one intra-op thread; the caller's thread count is restored after.
    With workers <= 1 it is the plain loop, on the caller's thread and settings.
    """
    def run(item: Item) -> Result:
        with torch.no_grad():  # grad mode is thread-local: the workers do not inherit the caller's
            return function(item)

    if workers <= 1:
        return [run(item) for item in items]
    caller_threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(max_workers=workers, initializer=_single_threaded_ops) as pool:
            return list(pool.map(run, items))
    finally:
        torch.set_num_threads(caller_threads)  # torch also keeps the last count set as its global default
