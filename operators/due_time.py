"""A Kafka source that releases each message no earlier than its due time.

Built for delayed retry tiers: messages of one topic partition are already in due-time order
(one fixed delay per topic), so a partition only ever waits for its head, and everything
behind it is due later. A partition holds at most the one fetch its head came in (bounded,
like librdkafka's own read-ahead), fetches nothing more while the head waits, and sleeps until
the head is due. The snapshot is the head's offset, so a crash neither loses a held message
(it is read again) nor releases it early (the caller's ``due_at`` reads its due time again).
Positions reach the consumer group as the Kafka input's do (:class:`operators.kafka.Progress`).
A message the client cannot read is logged and skipped: it has no value to release.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, TopicPartition

from claimx_flow.kafka.records import KafkaRecord
from operators import shutdown
from operators.kafka import (
    InputObserver,
    KafkaInput,
    Progress,
    QuietObserver,
    consumer_settings,
    fatal_or_logged,
    record_of,
    split_part,
    starting_offset,
)

SHUTDOWN_POLL = timedelta(seconds=1)

# Fetch little ahead: a tier may hold 100,000s of messages that must not all sit in memory.
_HOLDING_CONSUMER = {
    "fetch.wait.max.ms": 50,
    "queued.max.messages.kbytes": 1024,
    "fetch.max.bytes": 1024 * 1024,
    "max.partition.fetch.bytes": 256 * 1024,
}

DueAt = Callable[[KafkaRecord], datetime]
"""When a record may be released (timezone-aware)."""


class ReleaseObserver(InputObserver, Protocol):
    """What a due-time partition reports beside reading: its waiting head and its releases."""

    def holding(self, topic: str, partition: int, head_due_in_s: float) -> None:
        """Seconds until the head is due (0 when nothing waits)."""

    def released(self, topic: str, lateness_s: float) -> None:
        """A record left this long after its due time."""


class QuietReleases(QuietObserver):
    def holding(self, topic: str, partition: int, head_due_in_s: float) -> None:
        pass

    def released(self, topic: str, lateness_s: float) -> None:
        pass


class DueTimePartition(StatefulSourcePartition[KafkaRecord, int]):
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partition: int,
        resumed: int | None,
        *,
        due_at: DueAt,
        batch_size: int,
        stop_at_end: bool,
        observer: ReleaseObserver,
    ) -> None:
        self._consumer = Consumer({**config, "enable.partition.eof": stop_at_end})
        self._offset = starting_offset(self._consumer, topic, partition, resumed)
        self._consumer.assign([TopicPartition(topic, partition, self._offset)])
        self._topic = topic
        self._partition = partition
        self._progress = Progress(self._consumer, topic, partition)
        self._due_at = due_at
        self._batch_size = batch_size
        self._observer = observer
        self._at_end = False
        # The records of the last fetch not yet released, with their due times: the first is
        # the head. At most one fetch, however many messages the topic holds.
        self._ahead: deque[tuple[KafkaRecord, datetime]] = deque()

    def next_batch(self) -> list[KafkaRecord]:
        if shutdown.requested() or (self._at_end and not self._ahead):
            raise StopIteration
        self._progress.publish()
        now = datetime.now(UTC)
        if not self._ahead:
            self._fetch()
        released: list[KafkaRecord] = []
        while self._ahead and self._ahead[0][1] <= now:
            record, due = self._ahead.popleft()
            self._observer.released(self._topic, max((now - due).total_seconds(), 0))
            released.append(record)
            self._offset = record.offset + 1
        head_due = self._ahead[0][1] if self._ahead else None
        waiting = (head_due - now).total_seconds() if head_due else 0.0
        self._observer.holding(self._topic, self._partition, waiting)
        self._observer.polled(quiet_until=head_due)  # asleep until the head is due
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
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end = True
                else:
                    fatal_or_logged(error, f"{self._topic}[{self._partition}]")
                continue
            record = record_of(msg, self._topic, self._partition)
            self._ahead.append((record, self._due_at(record)))

    def snapshot(self) -> int:
        """The first record not released: a crash reads it (and what follows) again."""
        offset = self._ahead[0][0].offset if self._ahead else self._offset
        self._observer.snapshotted(self._topic, self._partition, offset)
        self._progress.snapshotted(offset)
        return offset

    def close(self) -> None:
        self._consumer.close()


class DueTimeInput(KafkaInput):
    """Every partition of ``topics``; each releases its records when ``due_at`` says.

    ``stop_at_end`` ends a partition once it is drained and holds nothing (batch runs).
    """

    def __init__(
        self,
        client: Mapping[str, Any],
        group_id: str,
        topics: Iterable[str],
        due_at: DueAt,
        *,
        batch_size: int = 500,
        stop_at_end: bool = False,
        observer: ReleaseObserver | None = None,
    ) -> None:
        super().__init__(client, group_id, topics, batch_size=batch_size, stop_at_end=stop_at_end)
        self._due_at = due_at
        self._releases = observer or QuietReleases()

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[KafkaRecord, int]:
        partition, topic = split_part(for_part)
        return DueTimePartition(
            consumer_settings(self._client, self._group_id, **_HOLDING_CONSUMER),
            topic,
            partition,
            resume_state,
            due_at=self._due_at,
            batch_size=self._batch_size,
            stop_at_end=self._stop_at_end,
            observer=self._releases,
        )
