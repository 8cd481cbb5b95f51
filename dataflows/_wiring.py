"""A stage's Kafka input and its outputs, wired from the settings and the stage catalog.

The operators are generic; this is where they meet the project: client settings, consumer
groups and topics from the catalog, metrics and liveness through the runtime's observer, table
rows to one committer per Delta table, records to the checked Kafka producer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Stream

from claimx_flow import catalog
from claimx_flow.catalog import StageSpec
from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.delta.writer import writer_for
from claimx_flow.kafka.clients import client_config, producer_config
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.runtime import metrics
from claimx_flow.runtime.observers import StageObserver
from claimx_flow.stages import RowOutput, StageOutput
from claimx_flow.stages.tables import TableCommitter
from operators.commit_sink import CommitSink
from operators.kafka import CheckedProducer, KafkaInput, checked_kafka_output


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


def table_committer(settings: Settings, spec: StageSpec, table: str) -> TableCommitter:
    """The one committer of ``table``; rows it refuses dead-letter their messages to the
    stage's DLQ."""
    assert spec.dlq is not None, f"{spec.name} writes tables but has no DLQ"
    router = FailureRouter.for_stage(settings, spec.name, catalog.topic_name(settings, spec.dlq))
    return TableCommitter(
        writer_for(settings, TABLES[table]),
        router,
        lambda: CheckedProducer(producer_config(settings)),
        metrics.delta_written,
    )


def write_outputs(
    step_id: str,
    up: Stream[StageOutput],
    settings: Settings,
    spec: StageSpec,
    tables: Sequence[str] | None = None,
) -> None:
    """Send Kafka records through the checked producer and rows to one committer per table
    (by default the stage's tables)."""
    tables = spec.tables if tables is None else tables
    split = op.branch(f"{step_id}-split", up, _is_record)
    records = cast(Stream[OutboundRecord], split.trues)
    checked_kafka_output(f"{step_id}-kafka", records, producer_config(settings))
    if tables and settings.enable_delta_writes:
        rows = cast(Stream[RowOutput], split.falses)
        committers = {name: partial(table_committer, settings, spec, name) for name in tables}
        op.output(f"{step_id}-delta", rows, CommitSink(committers))


def _is_record(output: StageOutput) -> bool:
    return isinstance(output, OutboundRecord)
