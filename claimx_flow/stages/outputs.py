"""What a stage produces: rows for Delta tables and records for Kafka topics.

A row travels with the message it came from, so that a row its table refuses can dead-letter
that one message, and its batch-mates still land.
"""

from __future__ import annotations

from typing import Any, Protocol

from claimx_flow.delta.tables import TableRow
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord

SourcedRow = tuple[dict[str, Any], KafkaRecord]
"""A row and the message it came from."""
RowOutput = tuple[str, SourcedRow]
"""A sourced row and the name of its table (the Delta sinks are keyed by table)."""
StageOutput = RowOutput | OutboundRecord


class RecordSender(Protocol):
    """Writes records to Kafka and returns once each is confirmed."""

    def write_batch(self, items: list[OutboundRecord]) -> None: ...

    def close(self) -> None: ...


def sourced(rows: list[TableRow], source: KafkaRecord) -> list[RowOutput]:
    """The rows ``source`` produced, each marked with it."""
    return [(table, (row, source)) for table, row in rows]


__all__ = ["RecordSender", "RowOutput", "SourcedRow", "StageOutput", "TableRow", "sourced"]
