"""Delayed retry tiers: which tier a failure goes to, and when it may come back.

Each tier topic has one fixed delay, so within a partition messages are already in due-time
order and a reader only ever waits for the head. A transient failure climbs one tier per
attempt and, after ``MAX_RETRIES``, lands in the DLQ; a permanent one goes to the DLQ at once;
an auth failure does not spend an attempt (the credentials, not the message, are at fault) and
waits in the tier of its current attempt.

A tier that the configuration no longer names (``RETRY_DELAYS`` changed, or a pending topic's
tiers were renamed) is an *orphan*: its name still says its delay and its pending topic, so the
retry stage drains it like any other tier rather than strand what it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from claimx_flow.config import MAX_RETRY_DELAY_S, Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.kafka.topics import TopicState, describe_topics, topic_names
from claimx_flow.models import HEADER_PREFIX

DUE_HEADER = HEADER_PREFIX + "due_at"

_TIER_NAME = re.compile(r"(?P<pending>.+)\.retry\.(?P<amount>[0-9]+)(?P<unit>[ms])")
_UNIT_S = {"m": 60, "s": 1}


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

    def next_step(
        self, category: ErrorCategory, attempt: int, *, spent: bool = True
    ) -> Tier | None:
        """The tier for a message failing for the ``attempt``-th time, or None for the DLQ.
        An auth failure, or one that spent no attempt (``spent``), waits in the tier of the
        attempts it has had (the first, if none), and never goes to the DLQ for it."""
        if category is ErrorCategory.PERMANENT or not self.tiers:
            return None
        if category is ErrorCategory.AUTH or not spent:
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


def parse_tier(topic: str, pending_topics: Iterable[str]) -> Tier | None:
    """The tier a topic's name describes, ``<pending>.retry.5m`` or ``.retry.300s``, when
    ``<pending>`` is one of ``pending_topics``; else None."""
    match = _TIER_NAME.fullmatch(topic)
    if match is None or match["pending"] not in set(pending_topics):
        return None
    delay = int(match["amount"]) * _UNIT_S[match["unit"]]
    # A name may say any number (a tier made by hand, or by a mistaken setting): past the
    # longest delay settings allow, the tier releases as one of that delay.
    return Tier(topic, min(delay, MAX_RETRY_DELAY_S), match["pending"]) if delay > 0 else None


@dataclass(frozen=True)
class OrphanTier:
    """A tier topic on the broker that no configured ladder names, and what it holds."""

    tier: Tier
    state: TopicState

    @property
    def messages(self) -> int:
        return self.state.messages


def orphan_names(settings: Settings, topics: Iterable[str]) -> list[Tier]:
    """The tiers among ``topics`` (names on the cluster) that name a configured pending topic
    but no ladder: the one test of what an orphan is, for the retry stage that drains them and
    for ``claimx top`` and ``claimx trace``, which must see what they hold."""
    configured = {tier.topic for tier in all_tiers(settings)}
    pending = (settings.claimx_enrichment_pending_topic, settings.claimx_downloads_pending_topic)
    return [
        tier
        for name in sorted(topics)
        if name not in configured and (tier := parse_tier(name, pending)) is not None
    ]


def orphan_tiers(settings: Settings) -> list[OrphanTier]:
    """Tier topics of the configured pending topics that the ladders no longer name and that
    hold messages (released or not: Kafka keeps them until retention removes them)."""
    found = orphan_names(settings, topic_names(settings))
    if not found:
        return []
    states = describe_topics(settings, [tier.topic for tier in found])
    return [
        OrphanTier(tier, state)
        for tier, state in zip(found, states, strict=True)
        if state.messages > 0
    ]


def due_time(tier: Tier, failed_at: datetime) -> datetime:
    return failed_at + timedelta(seconds=tier.delay_s)


def release_time(record: KafkaRecord, tier: Tier) -> datetime:
    """When a message in ``tier`` may go back: its ``claimx.due_at`` header, never earlier than
    the tier's delay after it was written to the tier, and never later than twice that delay.

    A header cannot make a message jump the queue, nor hold it: a tier releases its partitions
    in order, so one message due in the year 9999 (a clock gone wrong, or a producer that is
    not ours) would hold every message behind it, and the tier keeps its messages for twice
    its delay plus an allowance. Only this one header is read (a full failure-metadata parse
    per message would cost more than the release itself); an unreadable one counts as absent.
    """
    floor = _floor(record, tier)
    due = _header_due(record)
    if due is None or due <= floor:
        return floor
    return min(due, floor + timedelta(seconds=tier.delay_s))


def _floor(record: KafkaRecord, tier: Tier) -> datetime:
    """The tier's delay after the message was written. A message cannot have been written after
    it is read, so one whose timestamp is ahead of this clock (a producer's clock gone wrong)
    counts as written now, or it would hold its partition, and every message behind it, until
    then; so does one with no timestamp, or one no datetime can hold (a stage that raised on
    it would stop at the same message on every start)."""
    now = datetime.now(UTC)
    written = record.created_at
    return due_time(tier, now if written is None else min(written, now))


def _header_due(record: KafkaRecord) -> datetime | None:
    for name, value in record.headers:
        if name == DUE_HEADER:
            try:
                due = datetime.fromisoformat(value.decode())
            except (UnicodeDecodeError, ValueError):
                return None
            return due if due.tzinfo else due.replace(tzinfo=UTC)
    return None
