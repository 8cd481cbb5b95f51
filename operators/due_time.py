"""A Kafka source that releases each message of a retry tier no earlier than its due time.

Messages in a tier partition are in due-time order (one fixed delay per tier), so a partition
only ever waits for its head: everything behind it is due later. The head is the only message
held in memory; while it waits, the partition is paused so nothing else is fetched, and the
partition sleeps until the head is due. The snapshot is the head's offset, so a crash neither
loses a held message (it is read again) nor releases it early (its due time is in its headers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from claimx_flow import health
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.failures import previous_failure
from claimx_flow.kafka_config import consumer_config
from claimx_flow.metrics import HELD, RELEASE_LATENESS
from claimx_flow.records import KafkaRecord
from claimx_flow.retry import Tier, due_time, utc_from_ms
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


def message_due_at(record: KafkaRecord, tier: Tier) -> datetime:
    """The due time in the failure headers; else the tier's delay after the record's timestamp.

    Never earlier than the tier's delay after the record was written to the tier: a header
    cannot make a message jump the queue.
    """
    info = previous_failure(record)
    floor = (
        due_time(tier, utc_from_ms(record.timestamp_ms))
        if record.timestamp_ms is not None
        else datetime.now(UTC)
    )
    if info is not None and info.due_at is not None:
        return max(info.due_at, floor)
    return floor


class TierPartition(StatefulSourcePartition[KafkaRecord, int]):
    def __init__(
        self, config: dict[str, Any], tier: Tier, partition: int, offset: int, batch_size: int
    ) -> None:
        self._consumer = Consumer(config)
        self._tp = TopicPartition(tier.topic, partition, offset)
        self._consumer.assign([self._tp])
        self._tier = tier
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._head: KafkaRecord | None = None
        self._head_due: datetime | None = None
        self._held = HELD.labels(tier=tier.topic, partition=str(partition))

    def next_batch(self) -> list[KafkaRecord]:
        if shutdown.requested():
            raise StopIteration
        now = datetime.now(UTC)
        released: list[KafkaRecord] = []
        if self._head is not None:
            assert self._head_due is not None
            if self._head_due > now:
                health.heartbeat(quiet_until=self._head_due)
                return []
            released.append(self._release(self._head, self._head_due, now))
            self._head = self._head_due = None
            self._consumer.resume([self._at(self._offset)])  # fetching goes on after the head
        for msg in self._consumer.consume(self._batch_size, 0.001):
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise ClaimxError(f"fatal Kafka error on {self._tier.topic}: {error}")
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("tier %s[%d]: %s", self._tier.topic, self._partition, error)
                continue
            record = self._record(msg)
            due = message_due_at(record, self._tier)
            if due > now:
                self._hold(record, due)
                break
            released.append(self._release(record, due, now))
        self._held.set((self._head_due - now).total_seconds() if self._head_due else 0)
        health.heartbeat(quiet_until=self._head_due)  # asleep until the head is due
        return released

    def next_awake(self) -> datetime | None:
        if self._head_due is None:
            return None
        return min(self._head_due, datetime.now(UTC) + SHUTDOWN_POLL)  # to notice a stop

    def _hold(self, record: KafkaRecord, due: datetime) -> None:
        """Keep only ``record``; forget what was fetched after it and stop fetching."""
        self._head, self._head_due = record, due
        self._offset = record.offset
        self._consumer.seek(self._at(record.offset + 1))
        self._consumer.pause([self._at(record.offset + 1)])

    def _release(self, record: KafkaRecord, due: datetime, now: datetime) -> KafkaRecord:
        RELEASE_LATENESS.labels(tier=self._tier.topic).observe(max((now - due).total_seconds(), 0))
        self._offset = record.offset + 1
        return record

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

    def _at(self, offset: int) -> TopicPartition:
        return TopicPartition(self._tier.topic, self._partition, offset)

    def snapshot(self) -> int:
        return self._offset

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
