"""The overlapped step: items start when they arrive and leave when they are done, a slow one
holds nobody, the process never has more than its bound in flight, a stuck loop fails the step,
and items in flight at a crash are in the recovery state and run again on resume."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow, Stream
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from operators.overlapped import Flight, Heartbeat, Stalled, overlapped_flat_map

EPOCH = timedelta(milliseconds=50)
X = TypeVar("X")


def timed_flow(
    source: TestingSource[object],
    mapper: object,
    out: list[tuple[str, float]],
    *,
    max_in_flight: int = 100,
    stall_timeout_s: float = 30.0,
) -> Dataflow:
    """``source`` through the overlapped step; each output with the time it was emitted."""
    flow = Dataflow("overlapped")
    items = op.input("in", flow, source)
    done = overlapped_flat_map(
        "work",
        items,
        mapper,  # type: ignore[arg-type]
        max_in_flight=max_in_flight,
        stall_timeout_s=stall_timeout_s,
    )
    stamped = op.map("stamp", done, lambda value: (value, time.monotonic()))
    op.output("out", stamped, TestingSink(out))
    return flow


def causes(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


async def after(value: str) -> list[str]:
    """``slow…`` takes a second, anything else 20 ms."""
    await asyncio.sleep(1.0 if value.startswith("slow") else 0.02)
    return [f"{value}-done"]


class SlowAtFirst:
    """A mapper whose ``slow`` item sleeps five seconds in the first execution only (so a crash
    finds it in flight), recording every call."""

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.first_run = threading.Event()
        self.first_run.set()
        self.calls: list[str] = []

    async def __call__(self, value: str) -> list[str]:
        self.calls.append(value)
        if value == self.slow and self.first_run.is_set():
            await asyncio.sleep(5.0)
        return [f"{value}-done"]


def crashing_input(tmp_path: Path, names: list[str]) -> tuple[RecoveryConfig, list[object]]:
    """A fresh recovery store, and input that reads ``names[0:2]`` together, ``names[2]`` an
    epoch or more later, aborts, and on resume has ``names[3]`` left to read."""
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    pause = TestingSource.PAUSE(timedelta(milliseconds=400))
    values = [names[0], names[1], pause, names[2], pause, TestingSource.ABORT(), names[3]]
    return RecoveryConfig(str(recovery)), values


def one_ordered_lane(items: Stream[X], mapper: object, *, max_in_flight: int) -> Stream[object]:
    """``items`` through the overlapped step, every one in the same ordered lane."""
    return overlapped_flat_map(
        "work",
        items,
        mapper,  # type: ignore[arg-type]
        max_in_flight=max_in_flight,
        stall_timeout_s=30,
        lane_of=lambda _value: "one",
        ordered=True,
    )


# The input stays open a while: at EOF the step waits for everything in flight (timers never
# fire after EOF), which would hide whether anything left earlier.
OPEN = TestingSource.PAUSE(timedelta(seconds=1.5))
HELD_S = 10.0
"""How long an item that waits on others' leaving waits at most."""


async def until(condition: Callable[[], bool], timeout_s: float = HELD_S) -> None:
    """Wait for what the test watches for, but never past ``timeout_s``: an item that waits on
    its batch-mates' leaving, where a step that held them back would hold it that long."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_a_slow_item_holds_back_none_of_its_batch_mates() -> None:
    """The slow item finishes only once its nine batch-mates have left (or after HELD_S, had
    the step held them back with it)."""
    out: list[tuple[str, float]] = []
    values = ["slow", *(f"fast{i}" for i in range(9))]

    async def slow_until_the_fast_left(value: str) -> list[str]:
        if value == "slow":
            await until(lambda: sum(name.startswith("fast") for name, _ in out) == 9)
        return [f"{value}-done"]

    started = time.monotonic()
    source = TestingSource([*values, OPEN], batch_size=10)
    run_main(timed_flow(source, slow_until_the_fast_left, out))
    emitted = dict(out)
    assert sorted(emitted) == sorted(f"{v}-done" for v in values)
    assert out[-1][0] == "slow-done"
    assert emitted["slow-done"] - started < HELD_S  # it did not wait out its own deadline


def test_later_batches_and_epochs_overtake_a_slow_item() -> None:
    """Batches of one, epochs of 50 ms: items read after the slow one, in later epochs, finish
    and leave while it is still in flight."""
    out: list[tuple[str, float]] = []
    values = ["slow", *(f"fast{i}" for i in range(5))]
    source = TestingSource([*values, OPEN], batch_size=1)
    run_main(timed_flow(source, after, out), epoch_interval=EPOCH)
    names = [name for name, _ in out]
    assert names[-1] == "slow-done"
    assert sorted(names[:-1]) == sorted(f"fast{i}-done" for i in range(5))


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_is_emitted_once_with_its_outputs_in_order(workers: int) -> None:
    async def twice(value: int) -> list[tuple[int, int]]:
        await asyncio.sleep(0.001 * (value % 7))
        return [(value, 0), (value, 1)]

    out: list[tuple[int, int]] = []
    flow = Dataflow("overlapped-workers")
    items = op.input("in", flow, TestingSource(range(200), batch_size=13))
    done = overlapped_flat_map("work", items, twice, max_in_flight=20, stall_timeout_s=30)
    op.output("out", done, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers, epoch_interval=EPOCH)
    assert sorted(out) == [(v, i) for v in range(200) for i in (0, 1)]
    for value in range(200):  # an item's outputs leave together, in the mapper's order
        position = out.index((value, 0))
        assert out[position + 1] == (value, 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_lanes_keep_each_lanes_arrival_order_and_overtake_each_other(
    workers: int,
) -> None:
    """Items of lane ``a`` finish in reverse (the first is the slowest) and still leave in the
    order they arrived; lane ``b``'s items, fast, leave before ``a``'s first is done."""
    started = time.monotonic()

    async def reverse_in_a(item: tuple[str, int]) -> list[tuple[str, int]]:
        lane, index = item
        if item == ("a", 0):  # the slowest: done once lane b has left, or after HELD_S
            await until(lambda: sum(name[0] == "b" for name, _ in out) == 3)
        await asyncio.sleep(0.4 - 0.08 * index if lane == "a" else 0.01)
        return [item]

    out: list[tuple[tuple[str, int], float]] = []
    flow = Dataflow("overlapped-ordered")
    values = [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("b", 1), ("a", 3), ("b", 2), OPEN]
    items = op.input("in", flow, TestingSource(values, batch_size=1))
    done = overlapped_flat_map(
        "work",
        items,
        reverse_in_a,
        max_in_flight=10,
        stall_timeout_s=30,
        lane_of=lambda item: item[0],
        ordered=True,
    )
    stamped = op.map("stamp", done, lambda value: (value, time.monotonic() - started))
    op.output("out", stamped, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers, epoch_interval=EPOCH)
    names = [item for item, _ in out]
    assert [item for item in names if item[0] == "a"] == [("a", i) for i in range(4)]
    assert [item for item in names if item[0] == "b"] == [("b", i) for i in range(3)]
    at = dict(out)
    assert max(at[("b", i)] for i in range(3)) < at[("a", 0)]  # b never waited for a
    assert at[("a", 0)] < HELD_S  # nor did a0 wait out its deadline for b


def test_an_ordered_lane_waits_for_its_first_item_rather_than_gather_without_end() -> None:
    """A lane whose first item is slow holds about ``max_in_flight`` items, finished ones
    included: the step then waits for that first item instead of taking more, and nothing is
    lost or reordered."""
    entered: list[int] = []
    out: list[int] = []
    held: list[int] = []

    async def first_slow(value: int) -> list[int]:
        await asyncio.sleep(0.5 if value == 0 else 0.001)
        return [value]

    def seen(value: int) -> int:  # items in the step (or on their way to it) as this one enters
        entered.append(value)
        held.append(len(entered) - len(out))
        return value

    flow = Dataflow("overlapped-ordered-bound")
    items = op.map("seen", op.input("in", flow, TestingSource(range(30), batch_size=1)), seen)
    done = one_ordered_lane(items, first_slow, max_in_flight=4)
    op.output("out", done, TestingSink(out))
    run_main(flow)
    assert out == list(range(30))
    assert max(held) <= 5  # the bound, and the one entering


def test_an_item_that_beats_as_its_parts_are_done_is_not_a_stall() -> None:
    """A read of thousands of tasks can take longer than the stall timeout while each of its
    parts finishes in time: the mapper beats the step's heartbeat as they do, and the step
    waits for the item. The same item, silent, fails the step (the next test's check)."""
    heartbeat = Heartbeat()

    async def in_parts(value: int) -> list[int]:
        for _ in range(10):  # 1 s in all, a beat every 0.1 s, against a 0.4 s stall timeout
            await asyncio.sleep(0.1)
            heartbeat.beat()
        return [value]

    out: list[int] = []
    flow = Dataflow("overlapped-heartbeat")
    items = op.input("in", flow, TestingSource(range(3), batch_size=3))
    done = overlapped_flat_map(
        "work", items, in_parts, max_in_flight=20, stall_timeout_s=0.4, heartbeat=heartbeat
    )
    op.output("out", done, TestingSink(out))
    run_main(flow)
    assert sorted(out) == [0, 1, 2]


def test_items_of_an_ordered_lane_in_flight_at_a_crash_run_again_in_order(
    tmp_path: Path,
) -> None:
    """Finished items waiting behind a slow first one are still in the recovery state: a
    crash starts them all again, and the resumed run emits the lane in its arrival order, the
    slow one first."""
    config, values = crashing_input(tmp_path, ["v0", "v1", "v2", "v3"])
    mapper = SlowAtFirst("v0")

    def flow(out: list[str]) -> Dataflow:
        flow = Dataflow("overlapped-ordered-resume")
        items = op.input("in", flow, TestingSource(values, batch_size=2))
        done = one_ordered_lane(items, mapper, max_in_flight=10)
        op.output("out", done, TestingSink(out))
        return flow

    first: list[str] = []
    run_main(flow(first), epoch_interval=EPOCH, recovery_config=config)
    assert first == []  # v1 and v2 finished, but wait behind v0
    mapper.first_run.clear()
    second: list[str] = []
    run_main(flow(second), epoch_interval=EPOCH, recovery_config=config)
    # The input may read again what came in the epoch the crash cut short (at-least-once),
    # but never out of order: the lane leaves as it arrived.
    assert second[0] == "v0-done" and second == sorted(second)
    assert set(second) == {f"v{i}-done" for i in range(4)}


def test_no_more_than_max_in_flight_are_started_and_not_finished() -> None:
    running, peak = 0, 0

    async def counted(value: int) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return [value]

    out: list[int] = []
    flow = Dataflow("overlapped-bound")
    items = op.input("in", flow, TestingSource(range(60), batch_size=1))
    done = overlapped_flat_map("work", items, counted, max_in_flight=4, stall_timeout_s=30)
    op.output("out", done, TestingSink(out))
    run_main(flow)
    assert sorted(out) == list(range(60))
    assert 2 <= peak <= 4


def test_an_exception_from_the_mapper_fails_the_step() -> None:
    async def broken(value: int) -> list[int]:
        if value == 3:
            raise ValueError("a bug no check foresaw")
        return [value]

    flow = Dataflow("overlapped-broken")
    items = op.input("in", flow, TestingSource(range(10), batch_size=10))
    done = overlapped_flat_map("work", items, broken, max_in_flight=20, stall_timeout_s=30)
    op.output("out", done, TestingSink([]))
    with pytest.raises(Exception) as caught:
        run_main(flow)
    assert any(isinstance(e, ValueError) for e in causes(caught.value))


def test_a_loop_that_stops_answering_fails_the_step() -> None:
    release = threading.Event()

    async def stuck(value: int) -> list[int]:
        while not release.is_set():
            await asyncio.sleep(0.05)
        return [value]

    flow = Dataflow("overlapped-stuck")
    items = op.input("in", flow, TestingSource(range(3), batch_size=3))
    done = overlapped_flat_map(
        "work", items, stuck, max_in_flight=20, stall_timeout_s=0.5, heartbeat=Heartbeat()
    )
    op.output("out", done, TestingSink([]))
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as caught:
            run_main(flow)
    finally:
        release.set()
    assert any(isinstance(e, Stalled) for e in causes(caught.value))
    assert time.monotonic() - started < 10


def test_the_stall_clock_counts_only_while_items_are_in_flight() -> None:
    flight = Flight(max_in_flight=2, stall_timeout_s=0.2)
    time.sleep(0.3)
    flight.check()  # nothing in flight: an idle step is not stuck
    flight.started(1)
    flight.check()
    time.sleep(0.3)
    with pytest.raises(Stalled):
        flight.check()
    flight.finished()
    flight.check()


def test_a_full_step_is_woken_once_a_quarter_is_free_and_a_draining_one_at_every_item() -> None:
    """Waking the worker at every finished download handed it the GIL once per file; a step
    at its bound now waits until a quarter of it is free (a drain still sees each item)."""
    flight = Flight(max_in_flight=8, stall_timeout_s=30)
    flight.started(8)
    room = threading.Thread(target=flight.wait_for_room)
    room.start()
    flight.finished()  # 7 in flight: room for one, not yet a quarter
    room.join(0.3)
    assert room.is_alive()
    flight.finished()  # 6: a quarter free
    room.join(0.2)
    assert not room.is_alive()
    drained = threading.Event()

    def drain() -> None:
        flight.wait_until(lambda: flight.running <= 5, every_item=True)
        drained.set()

    draining = threading.Thread(target=drain)
    draining.start()
    time.sleep(0.05)
    flight.finished()  # 5: the drain is told at once
    assert drained.wait(0.2)
    draining.join()


def test_a_caller_may_ask_to_be_woken_after_fewer_free_places() -> None:
    """The download stage never waits for more free places than its batch queued behind the
    slots, so no slot waits for the input."""
    flight = Flight(max_in_flight=120, stall_timeout_s=30, refill_at_most=20)
    flight.started(120)
    room = threading.Thread(target=flight.wait_for_room)
    room.start()
    for _ in range(19):
        flight.finished()
    room.join(0.3)
    assert room.is_alive()
    flight.finished()  # 100 in flight: the 100 slots stay busy while the step refills
    room.join(0.2)
    assert not room.is_alive()


def test_items_in_flight_at_a_crash_run_again_on_resume(tmp_path: Path) -> None:
    """The first execution aborts while ``slow`` is in flight across several epochs (its
    batch-mates long done); the resumed one starts it again from the recovery state and emits
    it, and the input does not read it again."""
    config, values = crashing_input(tmp_path, ["slow", "fast0", "fast1", "fast2"])
    mapper = SlowAtFirst("slow")

    def flow(out: list[tuple[str, float]]) -> Dataflow:
        return timed_flow(TestingSource(values, batch_size=2), mapper, out)

    first: list[tuple[str, float]] = []
    run_main(flow(first), epoch_interval=EPOCH, recovery_config=config)
    assert "slow-done" not in dict(first)  # aborted while it was in flight
    assert {"fast0-done", "fast1-done"} <= set(dict(first))

    mapper.first_run.clear()
    mapper.calls.clear()
    second: list[tuple[str, float]] = []
    run_main(flow(second), epoch_interval=EPOCH, recovery_config=config)
    names = [name for name, _ in second]
    assert names.count("slow-done") == 1
    assert mapper.calls.count("slow") == 1  # from the recovery state, not from the input
    assert "fast2-done" in names
    assert {name for name, _ in first + second} == {f"{v}-done" for v in values if type(v) is str}


def test_a_worker_waiting_for_room_beats_its_liveness_while_items_progress() -> None:
    """A full step's worker polls no source while it waits for room, for as long as the items
    in flight take (reads waiting their turns at a slow API: minutes). While the items beat
    the step's heartbeat, the wait beats the worker's liveness every second; once they stop,
    it is a stall, and no beat hides it."""
    liveness: list[float] = []
    heartbeat = Heartbeat()
    flight = Flight(
        max_in_flight=1,
        stall_timeout_s=0.6,
        heartbeat=heartbeat,
        while_waiting=lambda: liveness.append(time.monotonic()),
    )
    flight.started(1)
    stop_beating = threading.Event()

    def parts_done() -> None:
        while not stop_beating.wait(0.1):
            heartbeat.beat()

    beating = threading.Thread(target=parts_done)
    beating.start()
    finisher = threading.Timer(2.5, flight.finished)
    finisher.start()
    started = time.monotonic()
    flight.wait_for_room()  # 2.5 s, four stall timeouts, and no stall
    assert time.monotonic() - started >= 2.4
    assert len(liveness) >= 3 and max(b - a for a, b in itertools.pairwise(liveness)) < 1.5
    stop_beating.set()
    beating.join()

    flight.started(1)
    beats_before = len(liveness)
    with pytest.raises(Stalled):
        flight.wait_for_room()
    assert len(liveness) - beats_before <= 1  # the wait's first second, before any stall
