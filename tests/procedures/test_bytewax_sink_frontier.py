"""What Bytewax 0.21.1's recovery frontier waits for, pinned (why ``operators.kafka.KafkaOutput``
is a ``FixedPartitionedSink``).

With recovery on, Bytewax records an epoch as done (``fronts.worker_frontier``) and lets the
inputs read on once the snapshots of that epoch are written: stateful steps' snapshots, a
``FixedPartitionedSink``'s among them, each taken only after the step has seen all of the
epoch. A ``DynamicSink`` takes no snapshot, so nothing makes the frontier wait for it: records
still travelling through the steps before it can be written after their epoch was recorded as
done. Each sink here reads the frontier from the recovery partition as it writes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

ITEMS = 300
STEPS = 40  # map steps between the input and the sink


class _Counting(StatefulSourcePartition[tuple[int, int], int]):
    """One item per batch, tagged with the epoch it is read in (the first execution starts at
    epoch 1, and each snapshot closes one)."""

    def __init__(self) -> None:
        self.epoch = 1
        self.n = 0

    def next_batch(self) -> list[tuple[int, int]]:
        if self.n >= ITEMS:
            raise StopIteration
        self.n += 1
        return [(self.epoch, self.n)]

    def snapshot(self) -> int:
        self.epoch += 1
        return self.n


class _Source(FixedPartitionedSource[tuple[int, int], int]):
    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Counting:
        return _Counting()


class _Witness:
    """Per written item: (its epoch, the recovery frontier at the time of writing)."""

    def __init__(self, part: Path) -> None:
        self.db = sqlite3.connect(part)
        self.seen: list[tuple[int, int]] = []

    def write(self, items: list[Any]) -> None:
        (frontier,) = self.db.execute("SELECT MAX(worker_frontier) FROM fronts").fetchone()
        self.seen += [(item[0], frontier or 0) for item in items]

    def done_before_written(self) -> int:
        return sum(1 for epoch, frontier in self.seen if frontier > epoch)


def _run(tmp_path: Path, sink: Any, *, keyed: bool = False) -> None:
    flow = Dataflow("frontier")
    stream: Any = op.input("in", flow, _Source())
    for i in range(STEPS):
        stream = op.map(f"step-{i}", stream, lambda x: x)
    if keyed:  # a partitioned sink routes (key, value) pairs and writes the values
        stream = op.map("keyed", stream, lambda x: ("k", x))
    op.output("out", stream, sink)
    run_main(
        flow, epoch_interval=timedelta(milliseconds=1), recovery_config=RecoveryConfig(tmp_path)
    )


def _recovery(tmp_path: Path) -> _Witness:
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(tmp_path), "1"], check=True)
    return _Witness(tmp_path / "part-0.sqlite3")


def test_a_dynamic_sink_can_write_after_its_epoch_was_recorded_as_done(tmp_path: Path) -> None:
    witness = _recovery(tmp_path)

    class Part(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            witness.write(items)

    class Sink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Part:
            return Part()

    _run(tmp_path, Sink())
    assert witness.done_before_written() > 0


def test_a_partitioned_sink_holds_the_frontier_until_it_has_written(tmp_path: Path) -> None:
    witness = _recovery(tmp_path)

    class Part(StatefulSinkPartition[Any, None]):
        def write_batch(self, items: list[Any]) -> None:
            witness.write(items)

        def snapshot(self) -> None:
            return None

    class Sink(FixedPartitionedSink[Any, None]):
        def list_parts(self) -> list[str]:
            return ["only"]

        def part_fn(self, item_key: str) -> int:
            return 0

        def build_part(self, step_id: str, for_part: str, resume_state: None) -> Part:
            return Part()

    _run(tmp_path, Sink(), keyed=True)
    assert len(witness.seen) == ITEMS
    assert witness.done_before_written() == 0
