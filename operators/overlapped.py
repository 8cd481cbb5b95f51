"""Async work that overlaps: each item starts when it arrives and leaves when it is done.

``async_flat_map_batch`` hands a batch to the event loop and waits for all of it, so one slow
item holds its batch-mates, and nothing is in flight when an epoch ends (Bytewax's input reads
epoch E+1 only after every output of epoch E is written). Here an item is started on the
process's event loop as soon as it arrives, whatever batch or epoch it came in, and its outputs
are emitted as soon as it is done. The caller's own semaphore says how many run at once; the
step only bounds how many are started and not yet finished (``max_in_flight``, for the process),
by making the step that hands over new items wait: that is the backpressure on the input.

The law across a crash: every item that has not been emitted is in the step's recovery state.
The items of each lane are a stateful step's state, and Bytewax snapshots it at the end of
every epoch, while the input's offsets in the same snapshot are already past those items. A
resume builds each lane from its snapshot and starts its items again; the input replays only
what came after. An item finished (its outputs emitted) in an epoch the crash cut short is in
that epoch's starting snapshot and runs again: outputs are at-least-once, as everywhere.
So the mapper must be safe to run again for the same item (idempotent outputs, files of its
own that a second run replaces).

Items may instead leave in the order they arrived (``ordered``), lane by lane, with the lanes
chosen by the caller (``lane_of``): a stage whose later items overwrite what earlier ones wrote
(the same key, a newer version) keeps each source partition in one lane and its outputs in
order, while items of different lanes still overtake each other. A finished item then waits for
the ones before it in its lane; it no longer holds a place in flight, so a lane whose first item
is slow could gather finished items without end: once the process holds ``max_in_flight`` items
not yet emitted, a lane that takes more waits for its own first item.

Bytewax calls a stateful step only when an item arrives or a timer it asked for is due, so a
lane with items in flight asks to be woken every ``poll`` to emit what finished meanwhile (the
loop thread only queues finished outcomes; the worker thread emits them). A loop that stopped
answering is caught by ``stall_timeout_s``: items in flight and none finished (nor a
``Heartbeat`` beaten) for that long fails the step, and recovery starts them again.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from operators.async_step import EventLoopThread

X = TypeVar("X")
Y = TypeVar("Y")

log = logging.getLogger(__name__)

POLL = timedelta(milliseconds=10)
"""How often a lane with items in flight is woken to emit what finished: latency of an output,
not throughput (a finished item frees its slot on the loop at once)."""
LANES = 16
"""Keys the items are spread over: Bytewax places each key's state on one worker (by a hash
of the key), so a few more keys than workers spread the work across them."""


class Stalled(RuntimeError):
    """Items were in flight and none finished within the stall timeout: the step fails, and
    recovery starts them again."""


class Heartbeat:
    """Progress inside items, for a step whose items are long (a read of thousands of tasks,
    done in many parts): the mapper beats as each part is done, from any thread, and the stall
    check counts a beat as an item finished."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def beat(self) -> None:
        self.at = time.monotonic()


class Flight:
    """One step's items started and not yet finished, in this process (all its workers and
    lanes): room for more, and whether any finish at all."""

    def __init__(
        self,
        max_in_flight: int,
        stall_timeout_s: float,
        refill_at_most: int | None = None,
        heartbeat: Heartbeat | None = None,
        while_waiting: Callable[[], None] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self.stall_timeout_s = stall_timeout_s
        self._heartbeat = heartbeat
        self._while_waiting = while_waiting
        # A step waiting for room is woken once a quarter of the bound is free (or
        # ``refill_at_most`` places, if fewer), not at every finished item: each wake-up hands
        # the GIL to the worker thread and back, and the download bench's loop thread ran 15%
        # faster without one per file. The caller keeps its slots busy meanwhile by allowing
        # ``refill_at_most`` more in flight than it runs at once.
        refill = max_in_flight // 4
        if refill_at_most is not None:
            refill = min(refill, refill_at_most)
        self._wake_at = max_in_flight - max(1, refill)
        self._changed = threading.Condition()
        self._running = 0
        self._held = 0  # started and not yet emitted (ordered lanes hold finished items)
        self._every_item = 0
        self._progress_at = time.monotonic()

    @property
    def running(self) -> int:
        return self._running

    @property
    def held(self) -> int:
        return self._held

    def started(self, count: int) -> None:
        with self._changed:
            if self._running == 0:  # the stall clock counts from the first item in flight
                self._progress_at = time.monotonic()
            self._running += count
            self._held += count

    def emitted(self, count: int) -> None:
        """Items whose outputs left (on the worker thread)."""
        with self._changed:
            self._held -= count

    def finished(self) -> None:
        """One item finished (on the loop thread, after its lane has its outcome)."""
        with self._changed:
            self._running -= 1
            self._progress_at = time.monotonic()
            if self._every_item or self._running <= self._wake_at:
                self._changed.notify_all()

    def wait_for_room(self) -> None:
        """Until fewer than ``max_in_flight`` items run; once the bound is reached, until a
        quarter of it (at most ``refill_at_most`` places) is free."""
        self.wait_until(lambda: self._running < self.max_in_flight)

    def wait_until(self, done: Callable[[], bool], *, every_item: bool = False) -> None:
        """Until ``done()``, checked when room frees up (``every_item``: whenever an item
        finishes) and at least every second; raises ``Stalled`` if items are in flight and
        none finishes within the stall timeout. ``while_waiting`` is called at every wake-up of
        the wait that is not a stall, at least every second (a liveness heartbeat: the worker
        polls no source while it waits here, for as long as the items in flight take)."""
        with self._changed:
            self._every_item += every_item
            try:
                while not done():
                    remaining = self._stall_remaining()
                    if self._while_waiting is not None:
                        self._while_waiting()
                    self._changed.wait(min(remaining, 1.0))
            finally:
                self._every_item -= every_item

    def check(self) -> None:
        """Raise ``Stalled`` if items are in flight and none finished for too long."""
        with self._changed:
            self._stall_remaining()

    def _stall_remaining(self) -> float:
        if self._running == 0:
            return self.stall_timeout_s
        progress_at = self._progress_at
        if self._heartbeat is not None:
            progress_at = max(progress_at, self._heartbeat.at)
        remaining = self.stall_timeout_s - (time.monotonic() - progress_at)
        if remaining <= 0:
            log.error(
                "%d items in flight and none finished in %.0fs; the step fails",
                self._running,
                self.stall_timeout_s,
            )
            raise Stalled(
                f"{self._running} items in flight and none finished in {self.stall_timeout_s:.0f}s"
            )
        return remaining


class _Lane(StatefulBatchLogic[X, Y, list[X]], Generic[X, Y]):
    """The items of one key in flight; its snapshot is the items not yet emitted, in the order
    they arrived."""

    def __init__(
        self,
        mapper: Callable[[X], Awaitable[Iterable[Y]]],
        flight: Flight,
        loop: EventLoopThread,
        poll: timedelta,
        resumed: list[X] | None,
        ordered: bool = False,
    ) -> None:
        self._mapper = mapper
        self._flight = flight
        self._loop = loop
        self._poll = poll
        self._ordered = ordered
        self._seq = itertools.count()
        self._items: dict[int, X] = {}  # not yet emitted, in arrival order
        # Filled by the loop thread (deque appends are atomic), drained by the worker.
        self._finished: deque[tuple[int, list[Y] | BaseException]] = deque()
        self._done: dict[int, list[Y]] = {}  # finished, waiting for the items before them
        self._ready: list[Y] = []  # outputs taken in order, not yet handed to Bytewax
        if resumed:
            self._start(resumed)

    def on_batch(self, values: list[X]) -> tuple[list[Y], bool]:
        self._start(values)
        self._flight.wait_for_room()
        if self._ordered and self._flight.held >= self._flight.max_in_flight:
            # Finished items wait behind this lane's first: wait for it rather than take more.
            # (Only for this lane's own first item, which the loop finishes by itself: the
            # other lanes emit theirs when the worker comes back to them.)
            self._emit_ready()
            if self._items:
                first = next(iter(self._items))
                self._flight.wait_until(lambda: self._has_finished(first), every_item=True)
        return self._emit()

    def on_notify(self) -> tuple[list[Y], bool]:
        self._flight.check()
        return self._emit()

    def on_eof(self) -> tuple[list[Y], bool]:
        """Timers never fire after EOF: wait here for everything in flight (a graceful stop
        drains the lane, and leaves nothing to resume)."""
        self._flight.wait_until(
            lambda: len(self._finished) + len(self._done) >= len(self._items), every_item=True
        )
        return self._emit()

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + self._poll if self._items else None

    def snapshot(self) -> list[X]:
        return list(self._items.values())

    def _start(self, values: list[X]) -> None:
        coros = []
        for value in values:
            seq = next(self._seq)
            self._items[seq] = value
            coros.append(self._run(seq, value))
        self._flight.started(len(coros))
        self._loop.spawn(coros)

    async def _run(self, seq: int, value: X) -> None:
        outcome: list[Y] | BaseException
        try:
            outcome = list(await self._mapper(value))
        except BaseException as exc:  # the worker raises it: the step fails, recovery reruns
            outcome = exc
        self._finished.append((seq, outcome))
        self._flight.finished()

    def _has_finished(self, seq: int) -> bool:
        return seq in self._done or any(done == seq for done, _ in list(self._finished))

    def _emit(self) -> tuple[list[Y], bool]:
        """What finished since the last call (``ordered``: up to the first item of the lane
        still running), with what an earlier wait already took; the lane is dropped once
        nothing is left in it."""
        self._emit_ready()
        out, self._ready = self._ready, []
        return out, (StatefulBatchLogic.RETAIN if self._items else StatefulBatchLogic.DISCARD)

    def _emit_ready(self) -> None:
        while self._finished:
            seq, outcome = self._finished.popleft()
            if isinstance(outcome, BaseException):
                log.error("an overlapped item failed; the step fails", exc_info=outcome)
                raise outcome
            self._done[seq] = outcome
        emitted = 0
        if self._ordered:
            while self._items:
                seq = next(iter(self._items))
                if seq not in self._done:
                    break
                del self._items[seq]
                self._ready.extend(self._done.pop(seq))
                emitted += 1
        else:
            for seq, outcome in self._done.items():
                del self._items[seq]
                self._ready.extend(outcome)
            emitted = len(self._done)
            self._done.clear()
        self._flight.emitted(emitted)


def overlapped_flat_map(
    step_id: str,
    up: Stream[X],
    mapper: Callable[[X], Awaitable[Iterable[Y]]],
    *,
    max_in_flight: int,
    stall_timeout_s: float,
    refill_at_most: int | None = None,
    lanes: int = LANES,
    lane_of: Callable[[X], str] | None = None,
    ordered: bool = False,
    heartbeat: Heartbeat | None = None,
    while_waiting: Callable[[], None] | None = None,
    poll: timedelta = POLL,
) -> Stream[Y]:
    """Run the async ``mapper`` on each item as soon as it arrives; emit its outputs as soon as
    it is done.

    The mapper is expected to turn an item's failures into outputs and to bound its own time
    and concurrency; an exception it raises fails the step. Items in flight are the step's
    recovery state (so they must pickle) and are started again on resume: the mapper must be
    safe to run twice for one item. At most about ``max_in_flight`` items (per process) are
    started and not finished before the step stops taking more. ``stall_timeout_s`` is the
    backstop for a loop that stopped answering. Once at its bound, the step takes more when a
    quarter of ``max_in_flight`` is free, or ``refill_at_most`` items if that is fewer.

    ``lane_of`` names each item's lane (by default, items are dealt over ``lanes`` lanes in
    turn); ``ordered`` emits each lane's outputs in the order its items arrived.
    ``heartbeat``, beaten by the mapper as parts of an item are done, counts as progress for
    the stall timeout, so items that each take longer than it are not taken for a stall.
    ``while_waiting`` is called every second the worker waits for room (not a stall).
    """
    if lanes < 1:
        raise ValueError("lanes must be at least 1")
    flight = Flight(max_in_flight, stall_timeout_s, refill_at_most, heartbeat, while_waiting)
    loop = EventLoopThread.shared()
    arrivals = itertools.count()

    def in_turn(_item: X) -> str:
        return str(next(arrivals) % lanes)

    def builder(resumed: list[X] | None) -> _Lane[X, Y]:
        return _Lane(mapper, flight, loop, poll, resumed, ordered)

    keyed = op.key_on(f"{step_id}-lane", up, lane_of or in_turn)
    done = op.stateful_batch(f"{step_id}-in-flight", keyed, builder)
    return op.key_rm(f"{step_id}-out", done)
