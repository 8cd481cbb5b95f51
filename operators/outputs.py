"""A stage's outputs to their sinks: table rows to Delta, records to Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Stream

from claimx_flow.config import Settings
from claimx_flow.delta.tables import TableSpec
from claimx_flow.delta.writer import writer_for
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.runtime import metrics
from claimx_flow.stages import StageOutput, TableRow
from operators.delta_sink import DeltaTablesSink
from operators.kafka import CheckedKafkaOutput


def write_outputs(
    step_id: str, up: Stream[StageOutput], settings: Settings, tables: Sequence[TableSpec]
) -> None:
    """Send Kafka records through the checked producer and rows to one committer per table."""
    split = op.branch(f"{step_id}-split", up, _is_record)
    records = cast(Stream[OutboundRecord], split.trues)
    op.output(f"{step_id}-kafka", records, CheckedKafkaOutput(settings))
    if tables and settings.enable_delta_writes:
        rows = cast(Stream[TableRow], split.falses)
        writers = {spec.name: partial(writer_for, settings, spec) for spec in tables}
        op.output(f"{step_id}-delta", rows, DeltaTablesSink(writers, metrics.delta_written))


def _is_record(output: StageOutput) -> bool:
    return isinstance(output, OutboundRecord)
