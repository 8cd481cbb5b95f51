"""Kafka input and output with positions in recovery and checked deliveries.

Why not Bytewax's stock connectors: its sink registers no delivery callback and never checks
``flush()``, so a message the broker refused is lost without a trace. Ours fails the step, so the
epoch is not committed and recovery replays it. Our source takes the caller's client settings
(SASL/SSL reach it like every other client), hands the dataflow ``KafkaRecord``s that remember
their topic, partition and offset, and reports what it does to an :class:`InputObserver`, so
metrics and liveness stay the caller's business.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import recent_refusal
from claimx_flow.kafka.positions import REFRESH_S, committed_positions, position_metadata
from claimx_flow.kafka.positions import TIMEOUT_S as POSITIONS_TIMEOUT_S
from claimx_flow.kafka.records import (
    UNREADABLE_HEADERS,
    Headers,
    KafkaRecord,
    OutboundRecord,
    RecordBatch,
    raw_headers,
)
from claimx_flow.kafka.unreadable import lost_offset
from operators import shutdown

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 30.0


class KafkaInputError(RuntimeError):
    """The input cannot go on: a topic is missing, or the client hit a fatal error."""


class DeliveryError(RuntimeError):
    """Kafka did not confirm a message; the step fails so recovery replays the epoch."""


class InputObserver(Protocol):
    """What a source partition reports as it reads: for metrics and liveness."""

    def polled(self, quiet_until: datetime | None = None) -> None:
        """A poll: the worker is alive (and may legitimately sleep until ``quiet_until``)."""

    def consumed(self, topic: str, partition: int, count: int, lag: int | None) -> None:
        """``count`` records read; ``lag`` messages left behind them, when known."""

    def snapshotted(self, topic: str, partition: int, offset: int) -> None:
        """The partition's position went into a snapshot."""


class QuietObserver:
    """Reports nothing."""

    def polled(self, quiet_until: datetime | None = None) -> None:
        pass

    def consumed(self, topic: str, partition: int, count: int, lag: int | None) -> None:
        pass

    def snapshotted(self, topic: str, partition: int, offset: int) -> None:
        pass


def record_of(msg: Message, topic: str, partition: int) -> KafkaRecord:
    """The record of a message read from ``topic[partition]``.

    Built with ``tuple.__new__``: a named tuple's own ``__new__`` is a Python function, and with
    keywords it cost 0.7 us where this costs 0.16, for every message every stage reads.
    """
    kind, timestamp = msg.timestamp()
    raw = raw_headers(msg)
    headers, error = ((), UNREADABLE_HEADERS) if raw is None else (bytes_headers(raw), None)
    return _tuple_new(
        KafkaRecord,
        (
            topic,
            partition,
            int(msg.offset() or 0),
            timestamp if kind else None,
            msg.key(),
            msg.value(),
            headers,
            error,
        ),
    )


_tuple_new = tuple.__new__


def bytes_headers(raw: Any) -> Headers:
    """Headers as (name, bytes) pairs; a header sent without a value becomes ``b""``."""
    if not raw:
        return ()
    return [(name, value or b"") for name, value in raw]


def fatal_or_logged(error: KafkaError, topic: str, partition: int) -> None:
    """Raise on a fatal client error; log the rest (librdkafka reconnects by itself)."""
    where = f"{topic}[{partition}]"
    if error.fatal():
        raise KafkaInputError(f"fatal Kafka error on {where}: {error}")
    log.warning(
        "Kafka consumer on %s: %s", where, error, extra={"topic": topic, "partition": partition}
    )


IDLE_POLL = timedelta(milliseconds=25)
"""How soon an idle partition polls again: Bytewax's default after an empty batch is 1 ms, a
busy loop on an idle topic."""


class Progress:
    """Offsets published to the consumer group only once the outputs they cover are done.

    Bytewax starts no new epoch on an input before every snapshot of the previous epochs has
    been taken (and, with recovery, written), and every sink of ours is a stateful one whose
    snapshot waits for its writes: so when a partition is polled, each epoch before the current
    one is complete. The offset published is the one snapshotted an epoch earlier still, because
    a step may hold what it read near an epoch's end into the next (the download step's
    downloads in flight). A start without a recovery snapshot resumes from these
    offsets, so a bare ``python -m bytewax.run`` re-reads at most the last two epochs, never the
    topic.

    Each offset carries, as its commit metadata, the wall time of the snapshot it comes from:
    what was read at or past it was read later, so a restart knows since when the outputs it
    may make again were first made (``committed_positions``). An offset that has not moved is
    published again every ``REFRESH_S``, so that time stays recent on a quiet partition.
    """

    REFRESH_S = REFRESH_S

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        self._snapshots: deque[tuple[dict[int, int], float]] = deque(maxlen=2)
        self._published: dict[int, tuple[int, float]] = {}

    def start(self, partitions: Iterable[int], resumed: Mapping[int, int]) -> dict[int, int]:
        """Where each partition starts: the recovery snapshot's offset when there is one; else
        the group's published offset; else the beginning of the partition.

        The group's positions are read once for both jobs. Where a partition has no published
        time yet (a group's first start, or the first after an upgrade), its start is published
        with this start's time, so that a crash before the first snapshot is published still
        leaves the next start a time to read its routings from. It is published before the
        first message is read, and waited for: an asynchronous commit could land after a crash
        that followed the run's first routings. A partition with a time keeps it: an earlier
        run's, older, covers more. That publishing is best effort: without it, the next start
        routes them again, as it would have; and a start wholly from snapshots does not depend
        on reading the group."""
        partitions = list(partitions)
        try:
            committed = committed_positions(self._consumer, self._topic, partitions)
        except (KafkaException, ClaimxError) as exc:
            if any(p not in resumed for p in partitions):
                raise
            log.debug("start not published for %s: %s", self._topic, exc)
            return dict(resumed)
        offsets = {
            p: resumed[p]
            if p in resumed
            else committed[p].offset
            if p in committed
            else OFFSET_BEGINNING
            for p in partitions
        }
        untimed = [p for p in partitions if p not in committed or committed[p].snapshot_at is None]
        self._publish_start({p: offsets[p] for p in untimed})
        return offsets

    def _publish_start(self, offsets: Mapping[int, int]) -> None:
        """Commit ``offsets`` (a logical beginning as the partition's first offset) with now,
        and wait for the group's answer."""
        if not offsets:
            return
        at = time.time()
        try:
            starts = {p: o if o >= 0 else self._low(p) for p, o in offsets.items()}
            answered = self._consumer.commit(
                offsets=[
                    TopicPartition(self._topic, p, o, metadata=position_metadata(at))
                    for p, o in starts.items()
                ],
                asynchronous=False,
            )
        except KafkaException as exc:
            log.warning("start of %s not published: %s", self._topic, exc)
            return
        refused = {tp.partition: tp.error for tp in answered or () if tp.error is not None}
        for partition, error in refused.items():
            log.warning("start of %s[%d] not published: %s", self._topic, partition, error)
        self._published.update({p: (o, at) for p, o in starts.items() if p not in refused})

    def _low(self, partition: int) -> int:
        """The partition's first offset: where a start from its beginning reads."""
        low, _ = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=POSITIONS_TIMEOUT_S, cached=False
        )
        return int(low)

    def snapshotted(self, offsets: Mapping[int, int]) -> None:
        """The partitions' offsets as this epoch's snapshot holds them."""
        self._snapshots.append((dict(offsets), time.time()))

    def publish(self) -> None:
        """Commit the offsets of the epoch before the last finished one, where they moved."""
        if len(self._snapshots) < 2:
            return
        offsets, at = self._snapshots[0]
        moved = {
            partition: offset
            for partition, offset in offsets.items()
            if offset >= 0 and self._stale(partition, offset, at)
        }
        if not moved:
            return
        metadata = position_metadata(at)
        try:
            self._consumer.commit(
                offsets=[
                    TopicPartition(self._topic, p, o, metadata=metadata) for p, o in moved.items()
                ],
                asynchronous=True,
            )
        except KafkaException as exc:  # a later epoch publishes again
            log.debug("offsets not published for %s: %s", self._topic, exc)
            return
        self._published.update({p: (o, at) for p, o in moved.items()})

    def _stale(self, partition: int, offset: int, at: float) -> bool:
        published = self._published.get(partition)
        return published is None or published[0] != offset or at - published[1] > self.REFRESH_S


def unreadable_next(
    msg: Message, error: KafkaError, topic: str, partition: int, next_offset: int
) -> KafkaRecord | None:
    """A message the client could not read (corrupt, not decompressible) as a record with its
    ``error``, so the stage can dead-letter it, for a reader that seeks past each one it takes;
    None for errors that are about no message. Where it is: ``claimx_flow.kafka.unreadable``."""
    offset = lost_offset(msg, error, next_offset)
    if offset is None:
        return None
    return KafkaRecord(topic, partition, offset, None, msg.key(), None, error=error.str())


def seek_past(
    consumer: Consumer, topic: str, partition: int, offset: int, leader_epoch: int | None
) -> None:
    """Fetch ``topic[partition]`` from ``offset`` on: past an unreadable message, which
    librdkafka would otherwise fetch again and again. The last record's leader epoch keeps
    librdkafka's check for a truncated log; None after an unreadable record, whose epoch is
    unknown (librdkafka reports 0 for it, and a damaged batch that opens a new leader epoch
    would then look like a truncated log, sending the reader back to it). librdkafka refuses a
    seek only for a partition it is stopping (the consumer closing), when there is nothing left
    to fetch."""
    at = TopicPartition(
        topic, partition, offset, leader_epoch=-1 if leader_epoch is None else leader_epoch
    )
    try:
        consumer.seek(at)
    except KafkaException as exc:
        log.debug("%s [%d]: seek refused: %s", topic, partition, exc)


SentBefore = Callable[[str, int], Collection[int]]
"""Offsets of ``(topic, partition)`` whose whole outcome a run before this one already sent
(and a crash kept out of every snapshot): a start reads past them, as done."""


class KafkaPartition(StatefulSourcePartition[KafkaRecord, int]):
    """One topic partition, read from the offset in the recovery snapshot, or else from its
    consumer group's committed offset; offsets in ``sent_before`` are read past, not handed on."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partition: int,
        resumed: int | None,
        *,
        batch_size: int,
        stop_at_end: bool,
        observer: InputObserver,
        sent_before: Collection[int] = (),
    ) -> None:
        self._consumer = Consumer({**config, "enable.partition.eof": stop_at_end})
        self._progress = Progress(self._consumer, topic)
        self._offset = self._progress.start(
            [partition], {} if resumed is None else {partition: resumed}
        )[partition]
        self._consumer.assign([TopicPartition(topic, partition, self._offset)])
        self._topic = topic
        self._partition = partition
        self._batch_size = batch_size
        self._at_end = False
        self._idle = False
        self._observer = observer
        self._sent_before = {offset for offset in sent_before if offset >= self._offset}

    def next_batch(self) -> list[KafkaRecord]:
        if self._at_end or shutdown.requested():
            raise StopIteration
        self._observer.polled()
        self._progress.publish()
        batch: list[KafkaRecord] = []
        lost_any = False
        for msg in self._consumer.consume(self._batch_size, 0.001):
            error = msg.error()
            if error is None:
                batch.append(record_of(msg, self._topic, self._partition))
                continue
            next_offset = batch[-1].offset + 1 if batch else self._offset
            lost = unreadable_next(msg, error, self._topic, self._partition, next_offset)
            if lost is None:
                self._on_error(error)
            elif not lost_any:  # a refetch of the same one before the seek: not another
                batch.append(lost)
                lost_any = True
        if batch:
            self._offset = batch[-1].offset + 1
            self._observer.consumed(self._topic, self._partition, len(batch), self._lag())
        if lost_any:  # librdkafka would fetch it again, and again: read on past it
            seek_past(self._consumer, self._topic, self._partition, self._offset, None)
        self._idle = not batch
        return self._not_sent(batch) if self._sent_before else batch

    def _not_sent(self, batch: list[KafkaRecord]) -> list[KafkaRecord]:
        kept = [record for record in batch if record.offset not in self._sent_before]
        if len(kept) < len(batch):
            skipped = sorted(r.offset for r in batch if r.offset in self._sent_before)
            log.info(
                "%s [%d]: %d message(s) whose outcome was sent before this start, read past: %s",
                self._topic,
                self._partition,
                len(skipped),
                ", ".join(map(str, skipped[:20])) + (" ..." if len(skipped) > 20 else ""),
            )
        self._sent_before = {o for o in self._sent_before if o >= self._offset}
        return kept

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + IDLE_POLL if self._idle else None

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            self._at_end = True
            self._observer.consumed(self._topic, self._partition, 0, 0)
        else:
            fatal_or_logged(error, self._topic, self._partition)

    def _lag(self) -> int | None:
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, self._partition), cached=True
        )
        return max(high - self._offset, 0) if high is not None and high >= 0 else None

    def snapshot(self) -> int:
        self._observer.snapshotted(self._topic, self._partition, self._offset)
        self._progress.snapshotted({self._partition: self._offset})
        return self._offset

    def close(self) -> None:
        self._consumer.close()


def list_partitions(admin_config: Mapping[str, Any], topics: Iterable[str]) -> list[str]:
    """Every partition of ``topics`` as a Bytewax partition key, ``<partition>-<topic>``."""
    metadata = AdminClient(dict(admin_config)).list_topics(timeout=METADATA_TIMEOUT_S)
    parts: list[str] = []
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise KafkaInputError(f"topic {topic} is missing (run `claimx topics create`)")
        parts.extend(f"{p}-{topic}" for p in sorted(described.partitions))
    return parts


def split_part(for_part: str) -> tuple[int, str]:
    index, topic = for_part.split("-", 1)
    return int(index), topic


def consumer_settings(client: Mapping[str, Any], group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer of ``group_id`` that commits only what the source says is done."""
    return {
        **client,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    }


PARTITION_CONSUMER = {
    "fetch.wait.max.ms": 50,
    # librdkafka prefetches up to 64 MiB per consumer by default, and there is one consumer
    # per partition: with a backlog, 6 partitions held ~400 MiB of messages nobody had asked
    # for yet. 4 MiB is thousands of events, several batches ahead.
    "queued.max.messages.kbytes": 4096,
    # A partition whose queue reaches that bound is not fetched again for this long, however
    # soon the stage drains it: librdkafka's 1 s default held six such consumers to about
    # 49,000 messages/s of 620 bytes, against 800,000-874,000 at 10 ms
    # (`python -m claimx_flow.lab.bench.fetch_timers`).
    "fetch.queue.backoff.ms": 10,
}


class KafkaInput(FixedPartitionedSource[KafkaRecord, int]):
    """Every partition of ``topics``; the offset of each lives in recovery snapshots and, once
    its outputs are done, in the consumer group (:class:`Progress`).

    ``client`` is the librdkafka client configuration (brokers, security); ``group_id`` the
    consumer group the positions are committed to. ``stop_at_end`` ends the input when every
    partition is drained (benchmarks, batch runs). ``sent_before`` names, per partition, the
    offsets a start reads past because their outcome is already out (see :data:`SentBefore`).
    """

    def __init__(
        self,
        client: Mapping[str, Any],
        group_id: str,
        topics: Iterable[str],
        *,
        batch_size: int = 1000,
        stop_at_end: bool = False,
        observer: InputObserver | None = None,
        sent_before: SentBefore | None = None,
    ) -> None:
        self._client = dict(client)
        self._group_id = group_id
        self._topics = list(topics)
        self._batch_size = batch_size
        self._stop_at_end = stop_at_end
        self._observer = observer or QuietObserver()
        self._sent_before = sent_before

    def list_parts(self) -> list[str]:
        return list_partitions(self._client, self._topics)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[KafkaRecord, int]:
        return self.partition(for_part, resume_state)

    def partition(self, for_part: str, resume_state: int | None) -> KafkaPartition:
        partition, topic = split_part(for_part)
        return KafkaPartition(
            consumer_settings(self._client, self._group_id, **PARTITION_CONSUMER),
            topic,
            partition,
            resume_state,
            batch_size=self._batch_size,
            stop_at_end=self._stop_at_end,
            observer=self._observer,
            sent_before=self._sent_before(topic, partition) if self._sent_before else (),
        )


class _BatchPartition(StatefulSourcePartition[RecordBatch, int]):
    """A :class:`KafkaPartition` whose records come as one :class:`RecordBatch` per poll."""

    def __init__(self, part: str, inner: KafkaPartition) -> None:
        self._part = part
        self._inner = inner

    def next_batch(self) -> list[RecordBatch]:
        records = self._inner.next_batch()
        return [RecordBatch(self._part, records)] if records else []

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> int:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class KafkaBatchInput(FixedPartitionedSource[RecordBatch, int]):
    """:class:`KafkaInput` handing the dataflow one :class:`RecordBatch` per poll of a
    partition instead of one item per message: a stage that works a batch at a time pays
    Bytewax's per-item cost once per batch, and its outputs can be written under the
    partition's name (see :class:`KafkaOutput`)."""

    def __init__(self, records: KafkaInput) -> None:
        self._records = records

    def list_parts(self) -> list[str]:
        return self._records.list_parts()

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[RecordBatch, int]:
        return _BatchPartition(for_part, self._records.partition(for_part, resume_state))


@dataclass
class _Deliveries:
    """Refused deliveries, as librdkafka reports them (only failures are reported)."""

    failed: list[str]

    def __call__(self, error: KafkaError | None, msg: Any) -> None:
        if error is not None:
            self.failed.append(f"{msg.topic()}: {error.str()}")


def checked_settings(producer: Mapping[str, Any]) -> dict[str, Any]:
    """Producer settings of a checked sink.

    Only failed deliveries are reported back (``delivery.report.only.error``): a message still
    in the queue shows in ``flush()``'s count and a refused one in a report, so reports of
    successes told nothing, and each cost a Python callback per message on the worker.

    A message is never given up for lack of time (``delivery.timeout.ms`` 0, "infinite" in
    librdkafka's CONFIGURATION.md): librdkafka retries it until a broker takes it, and the epoch
    waits (:meth:`CheckedProducer.confirm`). A stage that gave up would only be started again
    into the same outage, and replay the epoch once it ended. A refusal (a message too large,
    a topic that does not exist) is still reported at once and fails the step.
    """
    return {
        # Records wait in the producer's queue until an epoch's end confirms them; bound it
        # (librdkafka's default is 1 GiB), so a slow broker holds the worker back instead.
        "queue.buffering.max.kbytes": 64 * 1024,
        **producer,
        "delivery.timeout.ms": 0,
        "delivery.report.only.error": True,
    }


CONFIRM_SLICE_S = 1.0
"""How long one ``flush`` waits inside :meth:`CheckedProducer.confirm` before it looks again."""
WAIT_NOTE_EVERY_S = 60.0
"""While Kafka confirms nothing, a warning says so this often (first after this long)."""
CLOSE_FLUSH_S = 10.0
"""What ``close`` gives messages still queued: an epoch's end has confirmed all it counts on."""
STOPPING_GIVE_UP_S = 30.0
"""After a SIGTERM, how long messages may stay unconfirmed before the step gives up on them
(the epoch replays on the next start): a drain must not wait out an outage."""
REFUSED_GIVE_UP_S = 30.0
"""How long a wait goes on while the brokers refuse the client's login or TLS handshake: that
is a finding for an operator, which no wait mends, and a restart names it (exit 2). The
refusal is the one the clients' error callback remembers (``recent_refusal``)."""


class _Waiting:
    """One wait for Kafka (queue room or confirmations): warns once a minute, tells
    ``on_waiting`` every slice, and gives up when waiting cannot end well."""

    def __init__(self, name: str, what: str, on_waiting: Callable[[], None] | None) -> None:
        self._name, self._what, self._on_waiting = name, what, on_waiting
        self.started = self._noted = time.monotonic()

    def slice(self, remaining: int, limit_s: float | None = None) -> None:
        """Called after each slice that left ``remaining`` messages waiting."""
        now = time.monotonic()
        waited = now - self.started
        if self._on_waiting is not None:
            self._on_waiting()
        if now - self._noted >= WAIT_NOTE_EVERY_S:
            self._noted = now
            log.warning(
                "%s: %d messages %s after %.0fs; waiting (the epoch ends when they are)",
                self._name,
                remaining,
                self._what,
                waited,
            )
        stop = shutdown.requested_at()
        if stop is not None and now - stop >= STOPPING_GIVE_UP_S:
            raise DeliveryError(
                f"{remaining} messages {self._what} {now - stop:.0f}s after the stop was asked"
                " for; giving up: the epoch replays on the next start"
            )
        refused = recent_refusal() if waited >= REFUSED_GIVE_UP_S else None
        if refused is not None:
            raise DeliveryError(f"{remaining} messages {self._what}: Kafka refused us: {refused}")
        if limit_s is not None and waited >= limit_s:
            raise DeliveryError(f"{remaining} messages {self._what} within {limit_s:.0f}s")

    def done(self) -> None:
        if self._noted != self.started:
            log.warning(
                "%s: Kafka took them after %.0fs", self._name, time.monotonic() - self.started
            )


class CheckedProducer(StatelessSinkPartition[OutboundRecord]):
    """Sends records and confirms them: ``send`` queues a batch (librdkafka batches, compresses
    and retries it in its own threads), ``confirm`` returns once Kafka has confirmed every
    message sent so far, or raises :class:`DeliveryError`. ``write_batch`` is both.

    ``on_waiting`` is called at least every second while the worker waits for Kafka (for room
    in the queue or for confirmations): a liveness check can tell that wait from a stall."""

    def __init__(
        self,
        producer: Mapping[str, Any],
        name: str = "producer",
        on_waiting: Callable[[], None] | None = None,
    ) -> None:
        self._deliveries = _Deliveries([])
        self._producer = Producer({**checked_settings(producer), "on_delivery": self._deliveries})
        self._name = name
        self._on_waiting = on_waiting
        self._sent = 0

    def send(self, items: Iterable[OutboundRecord]) -> None:
        """Queue ``items`` in order (waiting while the local queue is full)."""
        produce = self._producer.produce
        sent = 0
        for record in items:
            try:
                self._produce(produce, record)
            except BufferError:  # deliveries are behind: serve their reports, try again
                self._produce_when_room(produce, record)
            sent += 1
        self._sent += sent

    @staticmethod
    def _produce(produce: Callable[..., None], record: OutboundRecord) -> None:
        if record.headers:
            headers = record.headers  # a list, as librdkafka's binding wants
            if type(headers) is not list:
                headers = list(headers)
            produce(record.topic, record.value, record.key, headers=headers)
        else:
            produce(record.topic, record.value, record.key)

    def _produce_when_room(self, produce: Callable[..., None], record: OutboundRecord) -> None:
        waiting = _Waiting(self._name, "in a full producer queue", self._on_waiting)
        while True:
            self._producer.poll(0.05)
            try:
                self._produce(produce, record)
            except BufferError:
                waiting.slice(len(self._producer))
                continue
            waiting.done()
            return

    def confirm(self, limit_s: float | None = None) -> None:
        """Until every message sent so far is confirmed; raises if Kafka refused one.

        A broker that is away is waited for, however long (or ``limit_s``), with a warning
        every ``WAIT_NOTE_EVERY_S``: the step, and with it the epoch, waits, and nothing is lost
        or sent twice (the producer is idempotent). It gives up, and the epoch replays on the
        next start, when a stop was asked for ``STOPPING_GIVE_UP_S`` ago, or when the brokers
        have refused our login or TLS handshake for ``REFUSED_GIVE_UP_S``."""
        remaining = self._producer.flush(CONFIRM_SLICE_S)
        if remaining:
            waiting = _Waiting(self._name, "not yet confirmed by Kafka", self._on_waiting)
            while remaining:
                waiting.slice(remaining, limit_s)
                remaining = self._producer.flush(CONFIRM_SLICE_S)
            waiting.done()
        sent, self._sent = self._sent, 0
        failed, self._deliveries.failed = self._deliveries.failed, []  # each reported once
        if failed:
            raise DeliveryError(
                f"{len(failed)} of {sent} messages refused by Kafka; first: {failed[0]}"
            )

    def write_batch(self, items: list[OutboundRecord]) -> None:
        self.send(items)
        self.confirm()

    def close(self) -> None:
        self._producer.flush(CLOSE_FLUSH_S)


HASH_LANES = 4
"""Lanes of a Kafka output whose records are laned by key (:func:`hash_lanes`)."""

Lane = tuple[str, list[OutboundRecord]]
"""Records for one lane of a :class:`KafkaOutput`, in the order they are to be written."""


class _Lane(StatefulSinkPartition[list[OutboundRecord], None]):
    """One lane of a Kafka output: its records queued in order on the worker, and its
    snapshot waiting until Kafka confirmed them, so the epoch waits too."""

    def __init__(self, name: str, producer: CheckedProducer) -> None:
        self._name = name
        self._producer = producer

    def write_batch(self, values: list[list[OutboundRecord]]) -> None:
        for records in values:
            self._producer.send(records)

    def snapshot(self) -> None:
        try:
            self._producer.confirm()
        except Exception:
            log.exception(
                "%s: Kafka did not confirm; the step fails and the epoch replays", self._name
            )
            raise

    def close(self) -> None:
        try:  # bounded: Bytewax closes while it unwinds from another failure too
            self._producer.confirm(limit_s=CLOSE_FLUSH_S)
        except Exception:  # never a second error while Bytewax unwinds (see CommitBehind.close)
            log.exception("%s: closed with messages Kafka did not confirm", self._name)


class KafkaOutput(FixedPartitionedSink[list[OutboundRecord], None]):
    """Kafka writes that are part of the epoch: an idempotent producer (acks=all), every
    message's delivery checked, and no epoch counted as done before its messages are stored.

    Why not a ``DynamicSink`` (and not Bytewax's stock sink, which checks nothing): Bytewax
    0.21.1 records an epoch as done, and lets the inputs read on, by probing the snapshot
    stream only (src/recovery.rs: "We do not have to monitor output progress because that
    only makes sense on stateful outputs"), so a stateless sink can be handed records after
    their epoch already counts as done, and a SIGKILL then resumes past messages never sent
    (pinned by tests/procedures/test_bytewax_sink_frontier.py). Here each lane is a stateful
    partition whose snapshot waits for its confirmations.

    Items are ``(lane, records)``: a lane keeps its records in order. The lanes of a process
    share one producer, and a lane writes on the worker that owns it. ``lanes`` names them:
    name them as the dataflow's input partitions (:func:`input_lanes`) and write each batch
    under the partition it was read from, and Bytewax gives each lane to the worker that owns
    that input partition (src/timely.rs ``calc_primaries`` assigns the partitions of sources and
    sinks by the same rule from the same sorted names), so no record crosses workers or
    processes. Records with no such origin go by key (:func:`hash_lanes`). Use it through
    :func:`checked_kafka_output`.
    """

    def __init__(
        self,
        producer: Mapping[str, Any],
        lanes: Callable[[], list[str]],
        on_waiting: Callable[[], None] | None = None,
    ) -> None:
        self._producer = dict(producer)
        self._lanes = lanes
        self._on_waiting = on_waiting
        self._index: dict[str, int] = {}

    def list_parts(self) -> list[str]:
        names = sorted(set(self._lanes()))
        self._index = {name: index for index, name in enumerate(names)}
        return names

    def part_fn(self, item_key: str) -> int:
        if not self._index:
            self.list_parts()
        return self._index[item_key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Lane:
        producer = _shared(self._producer, step_id, self._on_waiting)
        return _Lane(f"{step_id}.{for_part}", producer)


def hash_lanes(count: int = HASH_LANES) -> Callable[[], list[str]]:
    """Lanes for records laned by key (:func:`lane_by_key`)."""
    names = [f"lane-{index}" for index in range(count)]
    return lambda: list(names)


def lane_by_key(records: Iterable[OutboundRecord], count: int = HASH_LANES) -> list[Lane]:
    """Records in :func:`hash_lanes` lanes by a hash of their key, so one key keeps its order."""
    lanes: dict[int, list[OutboundRecord]] = {}
    for record in records:
        lanes.setdefault(zlib.crc32(record.key or b"") % count, []).append(record)
    return [(f"lane-{index}", laned) for index, laned in lanes.items()]


def input_lanes(admin_config: Mapping[str, Any], topics: Iterable[str]) -> Callable[[], list[str]]:
    """Lanes named as a :class:`KafkaInput` of ``topics`` names its partitions."""
    config, names = dict(admin_config), list(topics)
    return lambda: list_partitions(config, names)


_producers: dict[str, CheckedProducer] = {}
_producers_lock = threading.Lock()


def _shared(
    config: dict[str, Any], name: str, on_waiting: Callable[[], None] | None
) -> CheckedProducer:
    """One producer per process and configuration: librdkafka producers are thread-safe, and
    each is several threads and connections of its own. ``name`` and ``on_waiting`` are the
    first asker's."""
    key = repr(sorted(config.items(), key=lambda item: item[0]))
    with _producers_lock:
        if key not in _producers:
            _producers[key] = CheckedProducer(config, name, on_waiting)
        return _producers[key]


def checked_kafka_output(
    step_id: str,
    up: Stream[Lane],
    producer: Mapping[str, Any],
    *,
    lanes: Callable[[], list[str]] | None = None,
    on_waiting: Callable[[], None] | None = None,
) -> None:
    """Write ``(lane, records)`` items to the topics their records name, through
    :class:`KafkaOutput` (by default with :func:`hash_lanes`)."""
    sink = KafkaOutput(producer, lanes or hash_lanes(), on_waiting)
    op.output(step_id, up, sink)


def checked_records_output(
    step_id: str,
    up: Stream[OutboundRecord],
    producer: Mapping[str, Any],
    *,
    on_waiting: Callable[[], None] | None = None,
) -> None:
    """:func:`checked_kafka_output` of single records, laned by key a batch at a time."""
    laned = op.flat_map_batch(f"{step_id}-lanes", up, lane_by_key)
    checked_kafka_output(step_id, laned, producer, on_waiting=on_waiting)
