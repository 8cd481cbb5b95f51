"""A Kafka source that releases each message no earlier than its due time.

Built for delayed retry tiers: messages of one topic partition are already in due-time order
(one fixed delay per topic), so a partition only ever waits for its head, and everything
behind it is due later. One consumer reads all partitions of a topic (a tier), not one consumer
per partition: a retry stage over eight tiers of six partitions holds eight connections, not 48
(Event Hubs counts them). A partition whose head waits is paused, so it holds at most the one
fetch its head came in (bounded, like librdkafka's own read-ahead), and the source sleeps until
the earliest head is due. The snapshot is each partition's head offset, so a crash neither loses
a held message (it is read again) nor releases it early (the caller's ``due_at`` reads its due
time again). Positions reach the consumer group as the Kafka input's do
(:class:`operators.kafka.Progress`). A message the client cannot read (corrupt, not
decompressible) is handed over in its place, in offset order, as a record with its ``error``
and no value (:func:`operators.kafka.unreadable_next`), for the caller to dead-letter: the
position moves past it only as it moves past a released record, in the same snapshot as the
epoch that carries it, and the consumer is sent past it (librdkafka alone would fetch it again
for ever). Offsets in ``sent_before`` (released by a run whose epoch a crash kept out of every
snapshot) are read past when their turn comes, not released again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from claimx_flow.kafka.records import KafkaRecord
from operators import shutdown
from operators.kafka import (
    IDLE_POLL,
    METADATA_TIMEOUT_S,
    PARTITION_CONSUMER,
    InputObserver,
    KafkaInputError,
    Progress,
    QuietObserver,
    SentBefore,
    consumer_settings,
    fatal_or_logged,
    record_of,
    seek_past,
    unreadable_next,
)

log = logging.getLogger(__name__)

SHUTDOWN_POLL = timedelta(seconds=1)

# Fetch a bounded distance ahead: a tier may hold 100,000s of messages that must not all sit
# in memory, but a tier's one consumer must also keep up with what falls due. A partition
# resumed after its head was released gets one fetch before it is paused again (which drops
# what was fetched past it). Two librdkafka timers decided whether it kept up, not the fetch
# sizes: a resumed partition was fetched again only about a second after its pause, and one
# whose local queue reached ``queued.max.messages.kbytes`` was not fetched for
# ``fetch.queue.backoff.ms`` (1 s by default; librdkafka's ``rd_kafka_toppar_fetch_decide``).
# With both out of the way (the seek in ``_pause_while_waiting``, and the 10 ms backoff of
# every Kafka input, ``PARTITION_CONSUMER``), 256 KiB per partition and a 1 MiB queue release
# 10,000 messages/s at 0.014-0.019 s p99 (`python -m claimx_flow.lab.bench.fetch_timers`;
# 0.08-0.12 s in `claimx bench retry`); before, 3-5 s late at p99 in some runs, and 256 KiB
# fell behind (12 s) where only 1 MiB per partition and 6 MiB per tier kept up.
HOLDING_CONSUMER = {
    **PARTITION_CONSUMER,
    "queued.max.messages.kbytes": 1024,
    "fetch.max.bytes": 1024 * 1024,  # librdkafka's floor: message.max.bytes (1,000,000)
    "max.partition.fetch.bytes": 256 * 1024,
}

DueAt = Callable[[KafkaRecord], datetime]
"""When a record may be released (timezone-aware)."""

Positions = dict[int, int]
"""Per Kafka partition of the topic: the first offset not released."""


class ReleaseObserver(InputObserver, Protocol):
    """What a due-time source reports beside reading: its waiting heads and its releases."""

    def holding(self, topic: str, partition: int, head_due_in_s: float) -> None:
        """Seconds until the head is due (0 when nothing waits)."""

    def released(self, topic: str, lateness_s: float) -> None:
        """A record left this long after its due time."""


class QuietReleases(QuietObserver):
    def holding(self, topic: str, partition: int, head_due_in_s: float) -> None:
        pass

    def released(self, topic: str, lateness_s: float) -> None:
        pass


class _Held:
    """One Kafka partition's records of its last fetch not yet released: the first is the
    head. At most one fetch, however many messages the partition holds.

    Each record is held with its due time; an unreadable one has none (None): it is due as
    soon as it is the head, so it leaves right after the records before it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.ahead: deque[tuple[KafkaRecord, datetime | None]] = deque()
        self.at_end = False
        self.paused = False
        self.leader_epoch: int | None = None  # of the last record fetched

    @property
    def head_due(self) -> datetime | None:
        return self.ahead[0][1] if self.ahead else None

    @property
    def position(self) -> int:
        return self.ahead[0][0].offset if self.ahead else self.offset

    @property
    def next_offset(self) -> int:
        """The first offset not fetched: after the last record held, or the position."""
        return self.ahead[-1][0].offset + 1 if self.ahead else self.offset

    def due(self, now: datetime) -> bool:
        """Whether the head may leave at ``now``."""
        if not self.ahead:
            return False
        due = self.ahead[0][1]
        return due is None or due <= now


class DueTimeTopic(StatefulSourcePartition[KafkaRecord, Positions]):
    """Every partition of one topic, through one consumer."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partitions: Iterable[int],
        resumed: Positions | None,
        *,
        due_at: DueAt,
        batch_size: int,
        stop_at_end: bool,
        observer: ReleaseObserver,
        sent_before: SentBefore | None = None,
    ) -> None:
        self._consumer = Consumer({**config, "enable.partition.eof": stop_at_end})
        self._progress = Progress(self._consumer, topic)
        offsets = self._progress.start(partitions, resumed or {})
        self._sent_before = (
            {
                partition: {o for o in sent_before(topic, partition) if o >= offset}
                for partition, offset in offsets.items()
            }
            if sent_before
            else {}
        )
        self._read_past = 0
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        self._held = {partition: _Held(offset) for partition, offset in offsets.items()}
        self._topic = topic
        self._due_at = due_at
        self._batch_size = batch_size
        self._stop_at_end = stop_at_end
        self._observer = observer
        self._idle = False

    def next_batch(self) -> list[KafkaRecord]:
        if shutdown.requested() or self._drained():
            raise StopIteration
        self._progress.publish()
        fetched = self._fetch()
        now = datetime.now(UTC)
        released: list[KafkaRecord] = []
        for partition, held in self._held.items():
            while held.due(now):
                record, due = held.ahead.popleft()
                held.offset = record.offset + 1
                if self._sent_before.get(partition) and self._released_before(record):
                    continue
                if due is not None:  # an unreadable record has no due time to be late for
                    self._observer.released(self._topic, max((now - due).total_seconds(), 0))
                released.append(record)
            self._pause_while_waiting(partition, held)
            head = held.head_due
            waiting = (head - now).total_seconds() if head is not None else 0.0
            self._observer.holding(self._topic, partition, waiting)
        if self._read_past:
            log.info(
                "%s: %d message(s) released before this start, read past",
                self._topic,
                self._read_past,
            )
            self._read_past = 0
        self._observer.polled(quiet_until=self._earliest_due())  # asleep until a head is due
        self._idle = not fetched and not released
        return released

    def _released_before(self, record: KafkaRecord) -> bool:
        """Whether an earlier run released ``record`` (its epoch never snapshotted): read past."""
        offsets = self._sent_before[record.partition]
        if record.offset not in offsets:
            return False
        offsets.discard(record.offset)
        self._read_past += 1
        return True

    def next_awake(self) -> datetime | None:
        """Soon while records come in; when idle, when the earliest head is due, or after a
        short pause when a partition is being read (never Bytewax's 1 ms spin)."""
        if not self._idle:
            return None
        now = datetime.now(UTC)
        reading = any(not held.paused for held in self._held.values())
        later = now + (IDLE_POLL if reading else SHUTDOWN_POLL)  # SHUTDOWN_POLL: notice a stop
        earliest = self._earliest_due()
        return later if earliest is None else min(earliest, later)

    def _fetch(self) -> int:
        """One fetch, from the partitions whose heads do not wait (the others are paused).

        A message the client cannot read is held in its place, and its partition's consumer
        is sent past it once this fetch is taken in."""
        messages = self._consumer.consume(self._batch_size, 0.001)
        unreadable: set[int] = set()
        for msg in messages:
            partition = msg.partition() or 0
            held = self._held[partition]
            error = msg.error()
            due: datetime | None
            if error is None:
                record = record_of(msg, self._topic, partition)
                due = self._due_at(record)
            elif error.code() == KafkaError._PARTITION_EOF:
                held.at_end = True
                continue
            else:
                lost = unreadable_next(msg, error, self._topic, partition, held.next_offset)
                if lost is None:  # about no message: the client's own trouble
                    fatal_or_logged(error, self._topic, partition)
                    continue
                if partition in unreadable:  # a refetch of the same one before the seek
                    continue
                record, due = lost, None
                unreadable.add(partition)
            held.ahead.append((record, due))
            held.at_end = False
            held.leader_epoch = None if error is not None else msg.leader_epoch()
        for partition in unreadable:
            self._seek_next(partition, self._held[partition])
        return len(messages)

    def _pause_while_waiting(self, partition: int, held: _Held) -> None:
        """Stop fetching a partition while its head waits; fetch again once it is released."""
        waiting = bool(held.ahead)
        if waiting == held.paused:
            return
        where = [TopicPartition(self._topic, partition)]
        if waiting:
            self._consumer.pause(where)
        else:
            self._consumer.resume(where)
            # A resume alone waits for librdkafka's fetcher to look again, about a second after
            # the pause; a seek to the first record not handed over fetches it at once. Every
            # record fetched has been released by now, so that is the one after the last
            # fetched.
            self._seek_next(partition, held)
        held.paused = waiting

    def _seek_next(self, partition: int, held: _Held) -> None:
        """Fetch the partition from the offset after the last record fetched (``seek_past``)."""
        seek_past(self._consumer, self._topic, partition, held.next_offset, held.leader_epoch)

    def _earliest_due(self) -> datetime | None:
        dues = [held.head_due for held in self._held.values() if held.head_due is not None]
        return min(dues, default=None)

    def _drained(self) -> bool:
        return self._stop_at_end and all(h.at_end and not h.ahead for h in self._held.values())

    def snapshot(self) -> Positions:
        """Each partition's first record not released: a crash reads it (and what follows)
        again."""
        positions = {partition: held.position for partition, held in self._held.items()}
        for partition, offset in positions.items():
            self._observer.snapshotted(self._topic, partition, offset)
        self._progress.snapshotted(positions)
        return positions

    def close(self) -> None:
        self._consumer.close()


class DueTimeInput(FixedPartitionedSource[KafkaRecord, Positions]):
    """Every partition of ``topics``, one source partition (and one consumer) per topic; each
    releases its records when ``due_at`` says.

    ``stop_at_end`` ends a topic once every partition is drained and holds nothing (batch runs).
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
        sent_before: SentBefore | None = None,
    ) -> None:
        self._client = dict(client)
        self._group_id = group_id
        self._topics = list(topics)
        self._due_at = due_at
        self._sent_before = sent_before
        self._batch_size = batch_size
        self._stop_at_end = stop_at_end
        self._observer = observer or QuietReleases()
        self._partitions: dict[str, list[int]] = {}

    def list_parts(self) -> list[str]:
        metadata = AdminClient(self._client).list_topics(timeout=METADATA_TIMEOUT_S)
        for topic in self._topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                raise KafkaInputError(f"topic {topic} is missing (run `claimx topics create`)")
            self._partitions[topic] = sorted(described.partitions)
        return list(self._topics)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Positions | None
    ) -> DueTimeTopic:
        if for_part not in self._partitions:
            self.list_parts()
        return DueTimeTopic(
            consumer_settings(self._client, self._group_id, **HOLDING_CONSUMER),
            for_part,
            self._partitions[for_part],
            resume_state,
            due_at=self._due_at,
            batch_size=self._batch_size,
            stop_at_end=self._stop_at_end,
            observer=self._observer,
            sent_before=self._sent_before,
        )
