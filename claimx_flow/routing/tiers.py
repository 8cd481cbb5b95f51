"""Delayed retry tiers: which tier a failure goes to, and when it may come back.

Each tier topic has one fixed delay, so within a partition messages are already in due-time
order and a reader only ever waits for the head. A transient failure climbs one tier per
attempt and, after ``MAX_RETRIES``, lands in the DLQ; a permanent one goes to the DLQ at once;
an auth failure does not spend an attempt (the credentials, not the message, are at fault) and
waits in the tier of its current attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import HEADER_PREFIX

DUE_HEADER = HEADER_PREFIX + "due_at"


@dataclass(frozen=True)
class Tier:
    topic: str
    delay_s: int
    pending_topic: str


@dataclass(frozen=True)
class RetryLadder:
    """The tiers in front of one pending topic."""

    pending_topic: str
    tiers: tuple[Tier, ...]
    max_retries: int

    def next_step(self, category: ErrorCategory, attempt: int) -> Tier | None:
        """The tier for a message failing for the ``attempt``-th time, or None for the DLQ."""
        if category is ErrorCategory.PERMANENT or not self.tiers:
            return None
        if category is ErrorCategory.AUTH:
            return self.tiers[min(max(attempt, 1), len(self.tiers)) - 1]
        if attempt > self.max_retries:
            return None
        return self.tiers[attempt - 1]


def enrichment_ladder(settings: Settings) -> RetryLadder:
    pending = settings.claimx_enrichment_pending_topic
    return _ladder(settings, pending, settings.enrichment_retry_topics)


def download_ladder(settings: Settings) -> RetryLadder:
    pending = settings.claimx_downloads_pending_topic
    return _ladder(settings, pending, settings.download_retry_topics)


def _ladder(settings: Settings, pending: str, topics: list[str]) -> RetryLadder:
    tiers = tuple(
        Tier(topic, delay, pending)
        for topic, delay in zip(topics, settings.retry_delays, strict=True)
    )
    return RetryLadder(pending, tiers, settings.max_retries)


def all_tiers(settings: Settings) -> list[Tier]:
    return [*enrichment_ladder(settings).tiers, *download_ladder(settings).tiers]


def due_time(tier: Tier, failed_at: datetime) -> datetime:
    return failed_at + timedelta(seconds=tier.delay_s)


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def release_time(record: KafkaRecord, tier: Tier) -> datetime:
    """When a message in ``tier`` may go back: its ``claimx.due_at`` header, never earlier than
    the tier's delay after it was written to the tier.

    A header cannot make a message jump the queue. Only this one header is read (a full
    failure-metadata parse per message would cost more than the release itself); an
    unreadable one counts as absent.
    """
    floor = (
        due_time(tier, utc_from_ms(record.timestamp_ms))
        if record.timestamp_ms is not None
        else datetime.now(UTC)
    )
    return max(_header_due(record) or floor, floor)


def _header_due(record: KafkaRecord) -> datetime | None:
    for name, value in record.headers:
        if name == DUE_HEADER:
            try:
                due = datetime.fromisoformat(value.decode())
            except (UnicodeDecodeError, ValueError):
                return None
            return due if due.tzinfo else due.replace(tzinfo=UTC)
    return None
