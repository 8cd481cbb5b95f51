"""One committer per Delta table: rows are routed by table name to a single sink partition.

Concurrent writers on one table fight over commits. Making each table a partition of a
``FixedPartitionedSink`` gives every table exactly one writer in the whole cluster, and each
batch of rows becomes one keyed MERGE (idempotent, so a replay after a crash is harmless), run
behind the worker (:mod:`operators.pipelined`) so the next batches are processed meanwhile
and committed together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from claimx_flow.delta.writer import DeltaWriter, WriteOutcome
from operators.pipelined import CommitBehind

TableRow = tuple[str, Mapping[str, Any]]


class _TablePartition(StatefulSinkPartition[Mapping[str, Any], None]):
    def __init__(
        self, writer: DeltaWriter, on_write: Callable[[WriteOutcome], None] | None
    ) -> None:
        self._writer = writer
        self._on_write = on_write
        self._behind: CommitBehind[Mapping[str, Any]] = CommitBehind(writer.spec.name, self._commit)

    def write_batch(self, values: list[Mapping[str, Any]]) -> None:
        self._behind.add(values)

    def _commit(self, values: list[Mapping[str, Any]]) -> None:
        outcome = self._writer.write(values)
        if self._on_write is not None:
            self._on_write(outcome)

    def snapshot(self) -> None:
        self._behind.wait()

    def close(self) -> None:
        self._behind.close()


class DeltaTablesSink(FixedPartitionedSink[Mapping[str, Any], None]):
    """Takes ``(table_name, row)`` pairs; each table is written by exactly one worker.

    ``writers`` maps each table name to a factory, called on the worker that owns the table.
    """

    def __init__(
        self,
        writers: Mapping[str, Callable[[], DeltaWriter]],
        on_write: Callable[[WriteOutcome], None] | None = None,
    ) -> None:
        self._writers = dict(writers)
        self._names = sorted(self._writers)
        self._on_write = on_write

    def list_parts(self) -> list[str]:
        return list(self._names)

    def part_fn(self, item_key: str) -> int:
        # Partitions are ordered by name across the cluster: route each table to its own.
        return self._names.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TablePartition:
        return _TablePartition(self._writers[for_part](), self._on_write)
