"""map_on_threads: order, concurrency, no-grad workers with one intra-op thread, the caller's count restored."""

from __future__ import annotations

import threading

import pytest
import torch

from multiview.engine.cpu_threads import map_on_threads


def test_results_in_item_order_equal_the_plain_loop():
    x = torch.randn(50, 40, dtype=torch.float64)
    expected = [x[i:i + 7] @ x.t() for i in range(0, 50, 7)]
    results = map_on_threads(lambda i: x[i:i + 7] @ x.t(), range(0, 50, 7), workers=3)
    assert len(results) == len(expected)
    for a, b in zip(results, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_items_run_concurrently_on_distinct_threads():
    barrier = threading.Barrier(2, timeout=30)  # breaks (an error) unless two items are in flight at once

    def work(_):
        barrier.wait()
        return threading.get_ident()

    assert len(set(map_on_threads(work, range(2), workers=2))) == 2


def test_workers_run_without_grad_on_one_thread_and_the_caller_keeps_its_count():
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        weight = torch.randn(3, requires_grad=True)
        seen = map_on_threads(lambda _: ((weight * 2).requires_grad, torch.get_num_threads()), range(4), workers=2)
        assert seen == [(False, 1)] * 4
        assert torch.get_num_threads() == 2
        assert map_on_threads(lambda _: (weight * 2).requires_grad, range(2), workers=1) == [False, False]
    finally:
        torch.set_num_threads(caller_threads)


def test_an_error_in_an_item_reaches_the_caller():
    def work(i):
        if i == 3:
            raise ValueError("item 3 is bad")
        return i

    with pytest.raises(ValueError, match="item 3 is bad"):
        map_on_threads(work, range(6), workers=2)
