"""Where a failed message goes, with its failure metadata as Kafka headers.

Every stage routes its failures here, so the rule is written once: the original message,
unchanged, plus ``claimx.*`` headers saying what went wrong, where the message first came from
and how many times it has been tried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from claimx_flow.catalog import StageName
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import (
    FailureInfo,
    MalformedHeadersError,
    MalformedMessageError,
    MessageIds,
    MessageOrigin,
    StageMessage,
    redact,
    replace_failure_headers,
)
from claimx_flow.routing.tiers import RetryLadder, due_time
from claimx_flow.runtime import health, metrics

log = logging.getLogger(__name__)

M = TypeVar("M", bound=StageMessage)


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
    """Turns a stage's failures into records for its retry tiers or its dead-letter queue."""

    stage: StageName
    dlq_topic: str
    ladder: RetryLadder | None = None
    secrets: tuple[str, ...] = ()

    @classmethod
    def for_stage(
        cls,
        settings: Settings,
        stage: StageName,
        dlq_topic: str,
        ladder: RetryLadder | None = None,
    ) -> FailureRouter:
        return cls(stage, dlq_topic, ladder, tuple(settings.secret_values()))

    def read(self, record: KafkaRecord, model: type[M]) -> tuple[KafkaRecord, M] | OutboundRecord:
        """The stage message in ``record``, or a DLQ record saying why it cannot be read."""
        try:
            return record, model.from_json(record.value)
        except MalformedMessageError as exc:
            return self.route(
                record,
                reason=exc.reason,
                error_class=type(exc).__name__,
                category=ErrorCategory.PERMANENT,
            )

    def reject(self, record: KafkaRecord, error: Exception) -> OutboundRecord:
        """A record that made the stage's own code fail: to the DLQ, with the error as reason,
        so the record cannot stop the stage (a replay sends it back once the code is fixed)."""
        return self.route(
            record,
            reason=f"{type(error).__name__}: {error}",
            error_class=type(error).__name__,
            category=ErrorCategory.PERMANENT,
        )

    def route(
        self,
        record: KafkaRecord,
        *,
        reason: str,
        error_class: str,
        category: ErrorCategory,
        ids: MessageIds | None = None,
    ) -> OutboundRecord:
        previous = previous_failure(record)
        info = FailureInfo.from_reason(
            redact(reason, self.secrets),
            error_class=error_class,
            origin=origin_of(record),
            stage=self.stage,
            category=category,
            previous=previous,
            ids=ids,
        )
        if category is ErrorCategory.AUTH:  # not the message's fault: spend no attempt
            info = info.model_copy(update={"attempt": previous.attempt if previous else 1})
            health.auth_failure()
        tier = self.ladder.next_step(category, info.attempt) if self.ladder else None
        if tier is not None:
            info = info.model_copy(update={"due_at": due_time(tier, info.last_failed_at)})
        metrics.failure(
            self.stage,
            category,
            tier.delay_s if tier else None,
            tier.topic if tier else self.dlq_topic,
        )
        return OutboundRecord(
            topic=tier.topic if tier else self.dlq_topic,
            key=record.key,
            value=record.value,
            headers=[(k, v or b"") for k, v in replace_failure_headers(record.headers, info)],
        )
