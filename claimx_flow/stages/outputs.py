"""What a stage produces: rows for Delta tables and records for Kafka topics."""

from __future__ import annotations

from claimx_flow.delta.tables import TableRow
from claimx_flow.kafka.records import OutboundRecord

StageOutput = TableRow | OutboundRecord

__all__ = ["StageOutput", "TableRow"]
