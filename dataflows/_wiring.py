"""A stage's Kafka input and its outputs, wired from the settings and the stage catalog.

The operators are generic; this is where they meet the project: client settings, consumer
groups and topics from the catalog, metrics and liveness through the runtime's observer, table
rows to one committer per Delta table, records to the checked Kafka producer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Stream

from claimx_flow import catalog
from claimx_flow.catalog import StageSpec
from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.delta.writer import writer_for
from claimx_flow.kafka.clients import client_config, producer_config
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.routing.ledger import RoutedLedger
from claimx_flow.runtime import health, metrics
from claimx_flow.runtime.observers import StageObserver
from claimx_flow.stages import RowBatch, StageBatch, StageOutput
from claimx_flow.stages.tables import TableCommitter, gathered
from operators.commit_sink import CommitSink
from operators.kafka import (
    CheckedProducer,
    KafkaBatchInput,
    KafkaInput,
    Lane,
    checked_kafka_output,
    hash_lanes,
    input_lanes,
    lane_by_key,
)


def kafka_input(
    settings: Settings,
    spec: StageSpec,
    *,
    batch_size: int = 1000,
    ledger: RoutedLedger | None = None,
) -> KafkaInput:
    """Every partition of the stage's input topics, positions published to its group, read
    past the messages an earlier run already routed (``ledger``, by default the stage's)."""
    return KafkaInput(
        client_config(settings),
        settings.consumer_group(spec.consumer),
        catalog.input_topics(settings, spec),
        batch_size=batch_size,
        stop_at_end=settings.claimx_stop_at_end,
        observer=StageObserver(),
        sent_before=ledger or RoutedLedger.for_stage(settings, spec),
    )


def kafka_batches(
    settings: Settings,
    spec: StageSpec,
    *,
    batch_size: int = 1000,
    ledger: RoutedLedger | None = None,
) -> KafkaBatchInput:
    """``kafka_input``, one ``RecordBatch`` per poll of a partition."""
    return KafkaBatchInput(kafka_input(settings, spec, batch_size=batch_size, ledger=ledger))


def table_committer(settings: Settings, spec: StageSpec, table: str) -> TableCommitter:
    """The one committer of ``table``; rows its MERGE refuses dead-letter their messages to
    the stage's DLQ."""
    return TableCommitter(
        writer_for(settings, TABLES[table], patient=True),
        stage_router(settings, spec),
        lambda: CheckedProducer(
            producer_config(settings), f"{table} refusals", health.waited_on_kafka
        ),
        metrics.delta_written,
    )


def stage_router(settings: Settings, spec: StageSpec) -> FailureRouter:
    assert spec.dlq is not None, f"{spec.name} writes tables but has no DLQ"
    return FailureRouter.for_stage(settings, spec.name, catalog.topic_name(settings, spec.dlq))


ROWS_PENDING = 50_000
"""Rows a table's committer gathers while its MERGE runs before the stage waits for it. A
MERGE reads the target's matching partitions whatever its size, so the longer one takes, the
more rows the next one should carry; this bounds the memory that costs (tens of MB)."""
COMMIT_LINGER_S = 1.0
"""How long a table's next write waits for rows to gather (unless ``ROWS_ENOUGH`` have, or
the epoch ends first). A write's cost is mostly fixed (it reads the target), so with rows
trickling in it would otherwise run back to back on a handful of rows each: the enrich bench
made 66-77 MERGEs per table in 12 s instead of about one a second, and twice the CPU."""
ROWS_ENOUGH = 20_000


def write_batches(
    step_id: str,
    up: Stream[StageBatch],
    settings: Settings,
    spec: StageSpec,
    tables: Sequence[str] | None = None,
) -> None:
    """Send each batch's records through the checked producer, under the input partition it was
    read from (or by key), and its rows to the one committer of each table (by default the
    stage's tables)."""
    tables = spec.tables if tables is None else tables
    records = op.flat_map(f"{step_id}-records", up, _lanes)
    lanes = input_lanes(client_config(settings), catalog.input_topics(settings, spec))
    checked_kafka_output(
        f"{step_id}-produce",
        records,
        producer_config(settings),
        lanes=lambda: [*lanes(), *hash_lanes()()],
        on_waiting=health.waited_on_kafka,
    )
    if tables and settings.enable_delta_writes:
        rows = op.flat_map(f"{step_id}-rows", up, _tables)
        committers = {name: partial(table_committer, settings, spec, name) for name in tables}
        op.output(
            f"{step_id}-delta",
            rows,
            CommitSink(
                committers, _rows, ROWS_PENDING, linger_s=COMMIT_LINGER_S, enough=ROWS_ENOUGH
            ),
        )


def write_outputs(
    step_id: str,
    up: Stream[StageOutput],
    settings: Settings,
    spec: StageSpec,
    tables: Sequence[str] | None = None,
) -> None:
    """``write_batches`` for a stage that hands its outputs over one at a time: what arrives
    together is gathered into one batch, its rows converted to Arrow on the worker (rows that
    do not fit dead-letter their messages)."""
    router = stage_router(settings, spec) if spec.dlq is not None else None
    batches = op.flat_map_batch(
        f"{step_id}-gather", up, lambda outputs: [gathered(None, outputs, router)]
    )
    write_batches(step_id, batches, settings, spec, tables)


def _lanes(batch: StageBatch) -> list[Lane]:
    if not batch.records:
        return []
    if batch.lane is None:
        return lane_by_key(batch.records)
    return [(batch.lane, batch.records)]


def _tables(batch: StageBatch) -> list[tuple[str, RowBatch]]:
    return list(batch.tables.items())


def _rows(batch: RowBatch) -> int:
    return int(batch.rows.num_rows)
