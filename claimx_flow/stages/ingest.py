"""Ingest: a raw event becomes a ``claimx_events`` row and an enrichment task, or a DLQ record.

Nothing is skipped: an unreadable event goes to ``claimx.events.dlq`` with its reason, and an
event of a type nobody handles still becomes a task (the enrichment stage classifies it), so
every event ends in Delta or a DLQ.

Each ``claimx_events`` row keeps the event as it arrived in ``raw_data``: the message's bytes
as text, exactly (they were read as strict UTF-8 to parse them), so a field a later ClaimX
version adds is kept even though no column knows it yet, and an audit sees what was sent, not
our reading of it. Re-serialising the parsed object instead would cost several times the
decode per event and would still not be what was sent (spacing, key order, number spelling).

The stage works a ``RecordBatch`` at a time and hands back one ``StageBatch``: the tasks and
dead letters as records, the ``claimx_events`` rows as Arrow columns built straight from the
events' fields. Rows are converted before any task is written: an event whose row the table
would refuse is dead-lettered instead of its task, so it never ends in both places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from claimx_flow.config import Settings
from claimx_flow.delta.tables import EVENTS, convert
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord, RecordBatch
from claimx_flow.models import EnrichmentTask, MalformedMessageError, MessageIds
from claimx_flow.models.event_fields import EventFields, read_event_fields
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.runtime import metrics
from claimx_flow.stages.outputs import RowBatch, StageBatch

Read = tuple[KafkaRecord, EventFields, OutboundRecord]
"""A record, its event's fields, and its enrichment task."""


@dataclass(frozen=True)
class Ingester:
    pending_topic: str
    router: FailureRouter
    write_events: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Ingester:
        return cls(
            pending_topic=settings.claimx_enrichment_pending_topic,
            router=FailureRouter.for_stage(settings, "ingest", settings.claimx_events_dlq_topic),
            write_events=settings.enable_delta_writes,
        )

    def ingest(self, batch: RecordBatch) -> StageBatch:
        """Every record of ``batch`` as a task and a row, or as a dead letter.

        A batch at a time, so the clock is read and the counter moved once per batch rather
        than once per event.
        """
        now = datetime.now(UTC)
        out = StageBatch(batch.part)
        read: list[Read] = []
        for record in batch.records:
            if record.error is not None:
                out.records.append(self.router.unreadable(record))
                continue
            try:
                fields = read_event_fields(record.value)
                key, value = EnrichmentTask.message_from_fields(fields)
            except MalformedMessageError as exc:
                out.records.append(self._dead_letter(record, exc))
                continue
            except Exception as exc:  # whatever one record causes stops that record only
                out.records.append(self.router.reject(record, exc))
                continue
            read.append((record, fields, OutboundRecord(self.pending_topic, key, value)))
        if self.write_events and read:
            table, read, refused = convert(read, lambda part: events_table(part, now))
            for (record, fields, _), error in refused:
                out.records.append(self._refused_row(record, fields, error))
            if table is not None:
                out.tables[EVENTS.name] = RowBatch(table, [record for record, _, _ in read])
        out.records.extend(task for _, _, task in read)
        if read:
            metrics.EVENTS_INGESTED.inc(len(read))
        return out

    def _refused_row(
        self, record: KafkaRecord, fields: EventFields, error: Exception
    ) -> OutboundRecord:
        """An event whose row ``claimx_events`` would refuse: to the DLQ instead of its task."""
        return self.router.route(
            record,
            reason=str(error),
            error_class=type(error).__name__,
            category=ErrorCategory.PERMANENT,
            ids=MessageIds(fields["project_id"], fields["event_id"], fields["media_id"]),
        )

    def _dead_letter(self, record: KafkaRecord, exc: MalformedMessageError) -> OutboundRecord:
        return self.router.route(
            record,
            reason=exc.reason,
            error_class=type(exc).__name__,
            category=ErrorCategory.PERMANENT,
        )


def events_table(events: Sequence[Read], now: datetime) -> pa.Table:
    """The events' ``claimx_events`` rows as Arrow columns (``raw_data``: each message's bytes
    as text, exactly; they were read as strict UTF-8 to parse them)."""
    fields = [f for _, f, _ in events]
    instants = [f["ingested_at"] for f in fields]
    return EVENTS.from_columns(
        {
            "event_id": [f["event_id"] for f in fields],
            "event_type": [f["event_type"] for f in fields],
            "project_id": [f["project_id"] for f in fields],
            "media_id": [f["media_id"] for f in fields],
            "task_assignment_id": [f["task_assignment_id"] for f in fields],
            "video_collaboration_id": [f["video_collaboration_id"] for f in fields],
            "master_file_name": [f["master_file_name"] for f in fields],
            "ingested_at": instants,
            "created_at": [now] * len(fields),
            "event_date": [instant.date() for instant in instants],
            "raw_data": [(record.value or b"").decode("utf-8") for record, _, _ in events],
        },
        len(fields),
    )
