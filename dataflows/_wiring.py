"""A stage's Kafka input and its outputs, wired from the settings and the stage catalog.

The operators are generic; this is where they meet the project: client settings, consumer
groups and topics from the catalog, metrics and liveness through the runtime's observer, table
rows to one committer per Delta table, records to the checked Kafka producer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Stream

from claimx_flow import catalog
from claimx_flow.catalog import StageSpec
from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.delta.writer import DeltaWriter, writer_for
from claimx_flow.kafka.clients import client_config, producer_config
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.runtime import metrics
from claimx_flow.runtime.observers import StageObserver
from claimx_flow.stages import StageOutput, TableRow
from operators.commit_sink import CommitSink
from operators.kafka import CheckedKafkaOutput, KafkaInput


def kafka_input(settings: Settings, spec: StageSpec, *, batch_size: int = 1000) -> KafkaInput:
    """Every partition of the stage's input topics, positions published to its group."""
    return KafkaInput(
        client_config(settings),
        settings.consumer_group(spec.consumer),
        catalog.input_topics(settings, spec),
        batch_size=batch_size,
        stop_at_end=settings.claimx_stop_at_end,
        observer=StageObserver(),
    )


def kafka_output(settings: Settings) -> CheckedKafkaOutput:
    return CheckedKafkaOutput(producer_config(settings))


@dataclass
class TableCommitter:
    """One Delta table's writer, counted in the metrics."""

    writer: DeltaWriter

    def commit(self, rows: list[Mapping[str, Any]]) -> None:
        metrics.delta_written(self.writer.write(rows))

    def close(self) -> None:
        pass


def table_committer(settings: Settings, table: str) -> TableCommitter:
    return TableCommitter(writer_for(settings, TABLES[table]))


def write_outputs(
    step_id: str, up: Stream[StageOutput], settings: Settings, tables: Sequence[str]
) -> None:
    """Send Kafka records through the checked producer and rows to one committer per table."""
    split = op.branch(f"{step_id}-split", up, _is_record)
    records = cast(Stream[OutboundRecord], split.trues)
    op.output(f"{step_id}-kafka", records, kafka_output(settings))
    if tables and settings.enable_delta_writes:
        rows = cast(Stream[TableRow], split.falses)
        committers = {name: partial(table_committer, settings, name) for name in tables}
        op.output(f"{step_id}-delta", rows, CommitSink(committers))


def _is_record(output: StageOutput) -> bool:
    return isinstance(output, OutboundRecord)
