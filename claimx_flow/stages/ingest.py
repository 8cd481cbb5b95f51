"""Ingest: a raw event becomes a ``claimx_events`` row and an enrichment task, or a DLQ record.

Nothing is skipped: an unreadable event goes to ``claimx.events.dlq`` with its reason, and an
event of a type nobody handles still becomes a task (the enrichment stage classifies it), so
every event ends in Delta or a DLQ.

Each ``claimx_events`` row keeps the event as it arrived in ``raw_data``: the message's bytes
as text, exactly (they were read as strict UTF-8 to parse them), so a field a later ClaimX
version adds is kept even though no column knows it yet, and an audit sees what was sent, not
our reading of it. Re-serialising the parsed object instead would cost several times the
decode per event and would still not be what was sent (spacing, key order, number spelling).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from claimx_flow.config import Settings
from claimx_flow.delta.tables import EVENTS
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import EnrichmentTask, MalformedMessageError, RawEvent
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.runtime import metrics
from claimx_flow.stages.outputs import StageOutput


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

    def __call__(self, record: KafkaRecord) -> list[StageOutput]:
        return self.ingest_batch([record])

    def ingest_batch(self, records: Iterable[KafkaRecord]) -> list[StageOutput]:
        """Every record's outputs, in record order.

        A batch at a time, so the clock is read and the counter moved once per batch rather
        than once per event (the per-event work is a few microseconds; those were two of them).
        """
        now = datetime.now(UTC)
        outputs: list[StageOutput] = []
        ingested = 0
        for record in records:
            if record.error is not None:
                outputs.append(self.router.unreadable(record))
                continue
            try:
                event = RawEvent.from_kafka(record.value)
                key, task = EnrichmentTask.message_from_event(event)
                row = event_row(event, now, record.value) if self.write_events else None
            except MalformedMessageError as exc:
                outputs.append(self._dead_letter(record, exc))
                continue
            except Exception as exc:  # whatever one record causes stops that record only
                outputs.append(self.router.reject(record, exc))
                continue
            outputs.append(OutboundRecord(self.pending_topic, key, task))
            if row is not None:
                outputs.append((EVENTS.name, (row, record)))
            ingested += 1
        if ingested:
            metrics.EVENTS_INGESTED.inc(ingested)
        return outputs

    def _dead_letter(self, record: KafkaRecord, exc: MalformedMessageError) -> OutboundRecord:
        return self.router.route(
            record,
            reason=exc.reason,
            error_class=type(exc).__name__,
            category=ErrorCategory.PERMANENT,
        )


def event_row(
    event: RawEvent, now: datetime | None = None, raw: bytes | None = None
) -> dict[str, object]:
    """The event's ``claimx_events`` row; ``raw`` is the message it was read from (UTF-8)."""
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "project_id": event.project_id,
        "media_id": event.media_id,
        "task_assignment_id": event.task_assignment_id,
        "video_collaboration_id": event.video_collaboration_id,
        "master_file_name": event.master_file_name,
        "ingested_at": event.ingested_at,
        "created_at": now or datetime.now(UTC),
        "event_date": event.ingested_at.date(),
        "raw_data": raw.decode("utf-8") if raw is not None else None,
    }
