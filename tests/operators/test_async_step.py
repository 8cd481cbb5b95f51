"""The async step: batches run concurrently on one shared loop, with a batch deadline; and
coroutines spawned on that loop without waiting."""

from __future__ import annotations

import asyncio
import threading
import time

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from operators.async_step import BatchTimeout, EventLoopThread, async_flat_map_batch


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_items_run_concurrently(workers: int) -> None:
    async def slow_double(batch: list[int]) -> list[int]:
        async def one(x: int) -> int:
            await asyncio.sleep(0.2)
            return x * 2

        return list(await asyncio.gather(*(one(x) for x in batch)))

    out: list[int] = []
    flow = Dataflow("async")
    numbers = op.input("in", flow, TestingSource(range(50), batch_size=50))
    op.output(
        "out",
        async_flat_map_batch("double", numbers, slow_double, batch_timeout_s=10),
        TestingSink(out),
    )
    started = time.monotonic()
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert sorted(out) == [x * 2 for x in range(50)]
    assert time.monotonic() - started < 8  # 50 x 0.2 s serially would be 10 s


def test_batch_deadline_raises() -> None:
    loop = EventLoopThread.shared()
    with pytest.raises(BatchTimeout):
        loop.run(asyncio.sleep(5), timeout_s=0.2)
    assert loop.run(asyncio.sleep(0, result=7), timeout_s=1) == 7


def test_a_waiting_worker_is_called_back_until_the_batch_ends_or_its_deadline() -> None:
    """The worker's liveness heartbeat: called through a long batch, and the deadline and the
    batch's own errors still hold."""
    loop = EventLoopThread.shared()
    beats: list[float] = []
    assert loop.run(asyncio.sleep(2.5, result=3), 10, lambda: beats.append(1)) == 3
    assert 1 <= len(beats) <= 2  # a second of the wait each, however late the thread wakes
    time.sleep(1.2)
    assert len(beats) <= 2  # none once the batch is done
    beats.clear()
    with pytest.raises(BatchTimeout):
        loop.run(asyncio.sleep(5), 1.5, lambda: beats.append(1))
    assert len(beats) <= 1  # the deadline holds: no beat past it

    async def late_failure() -> None:
        await asyncio.sleep(1.2)
        raise TimeoutError("the batch's own")

    with pytest.raises(TimeoutError, match="the batch's own"):
        loop.run(late_failure(), 10, lambda: None)


def test_spawned_coroutines_run_without_the_caller_waiting() -> None:
    loop = EventLoopThread.shared()
    done = threading.Event()
    finished: list[int] = []

    async def one(value: int) -> None:
        await asyncio.sleep(0.5)
        finished.append(value)
        if len(finished) == 3:
            done.set()

    loop.spawn([one(i) for i in range(3)])
    assert finished == []  # spawn returned before any had finished
    assert done.wait(5)
    assert sorted(finished) == [0, 1, 2]
