"""Async I/O inside a synchronous dataflow: one event loop per process, a batch at a time.

Bytewax calls steps synchronously. Starting a loop per batch would throw away connection pools,
so one long-lived loop runs on a daemon thread and every async step submits its whole batch to
it with ``run_coroutine_threadsafe``: concurrency comes from the batch, bounded by the caller's
own semaphores, and the step waits with a deadline so a stuck call cannot stall a partition
forever. (A step whose items must not wait for their batch-mates starts them on the same loop
without waiting: :mod:`operators.overlapped`.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream

X = TypeVar("X")
Y = TypeVar("Y")
T = TypeVar("T")

log = logging.getLogger(__name__)


WAIT_BEAT_S = 1.0
"""How often a worker waiting for a batch calls its ``while_waiting``."""


class BatchTimeout(RuntimeError):
    """A whole batch outlived its deadline; the step fails and recovery replays the batch."""


class EventLoopThread:
    """An asyncio loop on a daemon thread, started on first use and kept for the process."""

    _lock = threading.Lock()
    _shared: EventLoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # The loop keeps only weak references to its tasks: a spawned task lives in here.
        self._spawned: set[asyncio.Task[Any]] = set()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="claimx-async", daemon=True
        )
        self._thread.start()

    @classmethod
    def shared(cls) -> EventLoopThread:
        with cls._lock:
            if cls._shared is None:
                cls._shared = EventLoopThread()
            return cls._shared

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout_s: float,
        while_waiting: Callable[[], None] | None = None,
    ) -> T:
        """Run ``coro`` on the loop and wait for it, at most ``timeout_s``; ``while_waiting``
        is called every ``WAIT_BEAT_S`` of the wait (a liveness heartbeat: a worker waiting
        for a batch within its deadline is not stuck)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            wait = left if while_waiting is None else min(left, WAIT_BEAT_S)
            done, _ = concurrent.futures.wait([future], timeout=max(wait, 0.0))
            if done:
                break
            if time.monotonic() >= deadline:
                if not future.cancel():  # it finished meanwhile
                    break
                log.error("async batch did not finish within %.0fs; the step fails", timeout_s)
                raise BatchTimeout(f"async batch did not finish within {timeout_s:.0f}s")
            if while_waiting is not None:
                while_waiting()
        try:
            return future.result()
        except Exception:
            log.exception("async batch failed; the step fails and recovery replays the epoch")
            raise

    def spawn(self, coros: list[Coroutine[Any, Any, Any]]) -> None:
        """Start each of ``coros`` as a task on the loop and return at once: one wake-up of the
        loop for all of them. What a task returns or raises is its own business; it must report
        its outcome itself."""
        if coros:
            self.loop.call_soon_threadsafe(self._start, coros)

    def _start(self, coros: list[Coroutine[Any, Any, Any]]) -> None:
        for coro in coros:
            task = self.loop.create_task(coro)
            self._spawned.add(task)
            task.add_done_callback(self._spawned.discard)


def async_flat_map_batch(
    step_id: str,
    up: Stream[X],
    mapper: Callable[[list[X]], Awaitable[Iterable[Y]]],
    *,
    batch_timeout_s: float | Callable[[int], float],
    while_waiting: Callable[[], None] | None = None,
) -> Stream[Y]:
    """Hand each batch to an async ``mapper`` running on the process's event loop.

    The mapper is expected to turn per-item failures into values (failure envelopes) and to
    apply its own per-call timeouts; ``batch_timeout_s`` is the backstop for the whole batch,
    or a function of the batch's length giving it (batches are not bounded by a fixed size).
    ``while_waiting`` is called every second while the worker waits for a batch: a batch
    of slow items may take longer than a liveness probe allows between polls.
    """
    loop = EventLoopThread.shared()

    async def call(batch: list[X]) -> list[Y]:
        return list(await mapper(batch))

    def shim(batch: list[X]) -> list[Y]:
        if callable(batch_timeout_s):
            return loop.run(call(batch), batch_timeout_s(len(batch)), while_waiting)
        return loop.run(call(batch), batch_timeout_s, while_waiting)

    return op.flat_map_batch(step_id, up, shim)
