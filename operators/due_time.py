"""A Kafka source that releases each message of a retry tier no earlier than its due time.

Messages in a tier partition are in due-time order (one fixed delay per tier), so a partition
only ever waits for its head: everything behind it is due later. A partition holds at most
the one fetch its head came in (bounded, like librdkafka's own read-ahead) and fetches nothing
more while the head waits; it sleeps until the head is due. The snapshot is the head's offset,
so a crash neither loses a held message (it is read again) nor releases it early (its due time
is in its headers).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import consumer_config
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import HEADER_PREFIX
from claimx_flow.routing.tiers import Tier, due_time, utc_from_ms
from claimx_flow.runtime import health
from claimx_flow.runtime.metrics import HELD, RELEASE_LATENESS
from operators import shutdown
from operators.kafka import KafkaInput, _bytes_headers

log = logging.getLogger(__name__)

SHUTDOWN_POLL = timedelta(seconds=1)

# Fetch little ahead: a tier may hold 100,000s of messages that must not all sit in memory.
_TIER_CONSUMER = {
    "fetch.wait.max.ms": 50,
    "queued.max.messages.kbytes": 1024,
    "fetch.max.bytes": 1024 * 1024,
    "max.partition.fetch.bytes": 256 * 1024,
}


DUE_HEADER = HEADER_PREFIX + "due_at"


def message_due_at(record: KafkaRecord, tier: Tier) -> datetime:
    """The ``claimx.due_at`` header; else the tier's delay after the record's timestamp.

    Never earlier than the tier's delay after the record was written to the tier: a header
    cannot make a message jump the queue. Only this one header is read (a full failure-metadata
    parse per message would cost more than the release itself); an unreadable one counts as
    absent.
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


class TierPartition(StatefulSourcePartition[KafkaRecord, int]):
    def __init__(
        self, config: dict[str, Any], tier: Tier, partition: int, offset: int, batch_size: int
    ) -> None:
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(tier.topic, partition, offset)])
        self._tier = tier
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        # The records of the last fetch not yet released, with their due times: the first is
        # the head. At most one fetch, however many messages the tier holds.
        self._ahead: deque[tuple[KafkaRecord, datetime]] = deque()
        self._held = HELD.labels(tier=tier.topic, partition=str(partition))
        self._lateness = RELEASE_LATENESS.labels(tier=tier.topic)

    def next_batch(self) -> list[KafkaRecord]:
        if shutdown.requested():
            raise StopIteration
        now = datetime.now(UTC)
        if not self._ahead:
            self._fetch()
        released: list[KafkaRecord] = []
        while self._ahead and self._ahead[0][1] <= now:
            record, due = self._ahead.popleft()
            self._lateness.observe(max((now - due).total_seconds(), 0))
            released.append(record)
            self._offset = record.offset + 1
        head_due = self._ahead[0][1] if self._ahead else None
        self._held.set((head_due - now).total_seconds() if head_due else 0)
        health.heartbeat(quiet_until=head_due)  # asleep until the head is due
        return released

    def next_awake(self) -> datetime | None:
        if not self._ahead:
            return None
        return min(self._ahead[0][1], datetime.now(UTC) + SHUTDOWN_POLL)  # to notice a stop

    def _fetch(self) -> None:
        """Take the next fetch. Nothing more is taken while a head waits, so librdkafka's own
        read-ahead stops at queued.max.messages.kbytes and memory stays flat."""
        for msg in self._consumer.consume(self._batch_size, 0.001):
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise ClaimxError(f"fatal Kafka error on {self._tier.topic}: {error}")
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("tier %s[%d]: %s", self._tier.topic, self._partition, error)
                continue
            record = self._record(msg)
            self._ahead.append((record, message_due_at(record, self._tier)))

    def _record(self, msg: Any) -> KafkaRecord:
        kind, timestamp = msg.timestamp()
        return KafkaRecord(
            topic=self._tier.topic,
            partition=self._partition,
            offset=int(msg.offset() or 0),
            timestamp_ms=timestamp if kind else None,
            key=msg.key(),
            value=msg.value(),
            headers=_bytes_headers(msg.headers()),
        )

    def snapshot(self) -> int:
        """The first record not released: a crash reads it (and what follows) again."""
        return self._ahead[0][0].offset if self._ahead else self._offset

    def close(self) -> None:
        self._consumer.close()


class RetryTierInput(FixedPartitionedSource[KafkaRecord, int]):
    """Every partition of every tier; each releases its messages when they are due."""

    def __init__(self, settings: Settings, tiers: Iterable[Tier], *, batch_size: int = 500) -> None:
        self._settings = settings
        self._tiers = {tier.topic: tier for tier in tiers}
        self._batch_size = batch_size
        self._lister = KafkaInput(settings, "retry", list(self._tiers))

    def list_parts(self) -> list[str]:
        return self._lister.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> TierPartition:
        index, topic = for_part.split("-", 1)
        config = consumer_config(
            self._settings, group_id=self._settings.consumer_group("retry"), **_TIER_CONSUMER
        )
        return TierPartition(
            config,
            self._tiers[topic],
            int(index),
            OFFSET_BEGINNING if resume_state is None else resume_state,
            self._batch_size,
        )
