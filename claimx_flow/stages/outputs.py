"""What a stage produces: rows for Delta tables and records for Kafka topics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from claimx_flow.kafka.records import OutboundRecord

TableRow = tuple[str, dict[str, Any]]
StageOutput = TableRow | OutboundRecord


def split_outputs(outputs: Iterable[StageOutput]) -> tuple[list[TableRow], list[OutboundRecord]]:
    rows: list[TableRow] = []
    records: list[OutboundRecord] = []
    for output in outputs:
        if isinstance(output, OutboundRecord):
            records.append(output)
        else:
            rows.append(output)
    return rows, records
