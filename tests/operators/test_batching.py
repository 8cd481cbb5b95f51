"""Keyed batching: size bound, hard latency bound from the first item, nothing lost."""

from __future__ import annotations

import time
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from operators.batching import _BatchLogic, batch_by_key


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_group_by_key_within_size(workers: int) -> None:
    items = [(f"p{i % 4}", i) for i in range(103)]
    out: list[tuple[str, list[int]]] = []
    flow = Dataflow("batching")
    keyed = op.input("in", flow, TestingSource(items, batch_size=10))
    batches = batch_by_key("batch", keyed, max_size=7, max_latency=timedelta(seconds=30))
    op.output("out", batches, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    assert all(1 <= len(batch) <= 7 for _, batch in out)
    assert all(all(f"p{v % 4}" == key for v in batch) for key, batch in out)
    assert sorted(v for _, batch in out for v in batch) == list(range(103))


def test_deadline_is_set_by_the_first_item_and_never_moves() -> None:
    logic: _BatchLogic[int] = _BatchLogic(100, timedelta(seconds=5), None)
    assert logic.notify_at() is None
    logic.on_batch([1])
    first_deadline = logic.notify_at()
    assert first_deadline is not None
    time.sleep(0.01)
    logic.on_batch([2, 3])  # a trickle must not push the deadline back
    assert logic.notify_at() == first_deadline
    emitted, discard = logic.on_notify()
    assert emitted == [[1, 2, 3]] and discard


def test_full_batches_leave_at_once_and_remainder_is_kept_in_snapshot() -> None:
    logic: _BatchLogic[int] = _BatchLogic(3, timedelta(seconds=5), None)
    emitted, discard = logic.on_batch(list(range(7)))
    assert emitted == [[0, 1, 2], [3, 4, 5]] and not discard
    items, deadline = logic.snapshot()
    assert items == [6] and deadline is not None
    resumed: _BatchLogic[int] = _BatchLogic(3, timedelta(seconds=5), (items, deadline))
    assert resumed.notify_at() == deadline
    assert resumed.on_eof() == ([[6]], True)
