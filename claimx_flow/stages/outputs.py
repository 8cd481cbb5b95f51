"""What a stage produces: rows for Delta tables and records for Kafka topics.

A row travels with the message it came from, so that a row its table refuses can dead-letter
that one message, and its batch-mates still land.

A stage hands its outputs over either one at a time (``StageOutput``: a record, a row with its
table, or rows its stage already had in Arrow with their table) or a batch at a time
(``StageBatch``: records, and each table's rows already in Arrow). Batches cost the dataflow
one item where single outputs cost one each, and Arrow columns cross workers and processes as
buffers rather than as pickled dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from claimx_flow.delta.tables import TableRow
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord

SourcedRow = tuple[dict[str, Any], KafkaRecord]
"""A row and the message it came from."""
RowOutput = tuple[str, SourcedRow]
"""A sourced row and the name of its table (the Delta sinks are keyed by table)."""


@dataclass(frozen=True)
class RowBatch:
    """Rows for one table, already in its Arrow schema, and the message each row came from
    (``sources[i]`` made row ``i``)."""

    rows: pa.Table
    sources: list[KafkaRecord]


ConvertedOutput = tuple[str, RowBatch]
"""Rows already in Arrow (converted where they were checked) and the name of their table."""
StageOutput = RowOutput | ConvertedOutput | OutboundRecord


@dataclass
class StageBatch:
    """A batch of a stage's outputs.

    ``lane`` is the input partition the batch was read from (``RecordBatch.part``): its records
    are written under that name, on the worker that read them. ``None`` lanes them by key.
    """

    lane: str | None
    records: list[OutboundRecord] = field(default_factory=list)
    tables: dict[str, RowBatch] = field(default_factory=dict)


class RecordSender(Protocol):
    """Writes records to Kafka and returns once each is confirmed."""

    def write_batch(self, items: list[OutboundRecord]) -> None: ...

    def close(self) -> None: ...


def sourced(rows: list[TableRow], source: KafkaRecord) -> list[RowOutput]:
    """The rows ``source`` produced, each marked with it."""
    return [(table, (row, source)) for table, row in rows]


__all__ = [
    "ConvertedOutput",
    "RecordSender",
    "RowBatch",
    "RowOutput",
    "SourcedRow",
    "StageBatch",
    "StageOutput",
    "TableRow",
    "sourced",
]
