"""One committer per Delta table: rows are routed by table name to a single sink partition.

Concurrent writers on one table fight over commits. Making each table a partition of a
``FixedPartitionedSink`` gives every table exactly one writer in the whole cluster, and each
batch of rows becomes one keyed MERGE (idempotent, so a replay after a crash is harmless).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from claimx_flow.delta_writer import DeltaWriter, WriteMode, WriteOutcome

TableRow = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class TableTarget:
    """Where and how one table is written."""

    writer: Callable[[], DeltaWriter]
    mode: WriteMode


class _TablePartition(StatefulSinkPartition[Mapping[str, Any], None]):
    def __init__(
        self,
        writer: DeltaWriter,
        mode: WriteMode,
        on_write: Callable[[WriteOutcome], None] | None,
    ) -> None:
        self._writer = writer
        self._mode = mode
        self._on_write = on_write

    def write_batch(self, values: list[Mapping[str, Any]]) -> None:
        outcome = self._writer.write(values, self._mode)
        if self._on_write is not None:
            self._on_write(outcome)

    def snapshot(self) -> None:
        return None


class DeltaTablesSink(FixedPartitionedSink[Mapping[str, Any], None]):
    """Takes ``(table_name, row)`` pairs; each table is written by exactly one worker."""

    def __init__(
        self,
        targets: Mapping[str, TableTarget],
        on_write: Callable[[WriteOutcome], None] | None = None,
    ) -> None:
        self._targets = dict(targets)
        self._names = sorted(self._targets)
        self._on_write = on_write

    def list_parts(self) -> list[str]:
        return list(self._names)

    def part_fn(self, item_key: str) -> int:
        # Partitions are ordered by name across the cluster: route each table to its own.
        return self._names.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TablePartition:
        target = self._targets[for_part]
        return _TablePartition(target.writer(), target.mode, self._on_write)
