"""Where a failed message goes, with its failure metadata as Kafka headers.

Every stage routes its failures here, so the rule is written once: the original message,
unchanged, plus ``claimx.*`` headers saying what went wrong, where the message first came from
and how many times it has been tried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.models import (
    FailureInfo,
    MalformedHeadersError,
    MessageIds,
    MessageOrigin,
    Stage,
    redact,
    replace_failure_headers,
)
from claimx_flow.records import KafkaRecord, OutboundRecord

log = logging.getLogger(__name__)


def origin_of(record: KafkaRecord) -> MessageOrigin:
    timestamp = (
        datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)
        if record.timestamp_ms is not None
        else None
    )
    return MessageOrigin(record.topic, record.partition, record.offset, timestamp)


def previous_failure(record: KafkaRecord) -> FailureInfo | None:
    """The failure metadata a retried or replayed message carries, if any.

    Unreadable metadata must not cost the message: it is logged and the message is treated
    as failing for the first time.
    """
    try:
        return FailureInfo.maybe_from_headers(record.headers)
    except MalformedHeadersError as exc:
        log.warning("%s: ignoring malformed failure headers: %s", record.position, exc)
        return None


@dataclass(frozen=True)
class FailureRouter:
    """Turns a stage's failures into records for its dead-letter queue."""

    stage: Stage
    dlq_topic: str
    secrets: tuple[str, ...] = ()

    @classmethod
    def for_stage(cls, settings: Settings, stage: Stage, dlq_topic: str) -> FailureRouter:
        return cls(stage, dlq_topic, tuple(settings.secret_values()))

    def route(
        self,
        record: KafkaRecord,
        *,
        reason: str,
        error_class: str,
        category: ErrorCategory,
        ids: MessageIds | None = None,
    ) -> OutboundRecord:
        info = FailureInfo.from_reason(
            redact(reason, self.secrets),
            error_class=error_class,
            origin=origin_of(record),
            stage=self.stage,
            category=category,
            previous=previous_failure(record),
            ids=ids,
        )
        return OutboundRecord(
            topic=self.dlq_topic,
            key=record.key,
            value=record.value,
            headers=[(k, v or b"") for k, v in replace_failure_headers(record.headers, info)],
        )
