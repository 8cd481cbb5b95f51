"""Reading a window of Kafka: from the offset of a moment to the end seen when the read began.

One consumer serves a whole trace. It only looks: partitions are assigned with explicit
offsets, nothing is committed, and a read stops at each partition's high watermark as it was
when the range was planned, so a busy topic cannot keep a trace reading, and each partition is
released as soon as it is done. ``--limit`` caps the messages read of the busy topics; a range
over the cap keeps its newest messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import consumer_config, failure_reason, settled
from claimx_flow.kafka.partitions_left import PartitionsLeft
from claimx_flow.models import redact

IDLE_TIMEOUT_S = 15.0
"""A partition that yields nothing this long while offsets remain below its end is given up
(a partition whose leader is gone answers nothing, and no error either)."""


class TraceError(ClaimxError):
    """The trace cannot go on: Kafka unreachable, an offset that cannot be read."""


@dataclass(frozen=True)
class Range:
    """Offsets ``start <= offset < end`` of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(self.end - self.start, 0)


def cap(ranges: Sequence[Range], limit: int) -> tuple[list[Range], int]:
    """The ranges trimmed to at most ``limit`` messages in all, each keeping its newest ones;
    and how many messages were left out. Shares are max-min fair: a range smaller than an equal
    share is kept whole and the big ones split what remains, so a busy partition cannot starve a
    small one (shares in proportion to size gave a 25-message partition none beside 1M ones)."""
    total = sum(r.size for r in ranges)
    if total <= limit:
        return list(ranges), 0
    shares = fair_shares([r.size for r in ranges], limit)
    kept = [replace(r, start=r.end - share) for r, share in zip(ranges, shares, strict=True)]
    return kept, total - sum(shares)


def fair_shares(sizes: Sequence[int], limit: int) -> list[int]:
    """How much of each size to keep, ``limit`` in all: smallest first, each at most an equal
    share of what is left."""
    shares = [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    left = limit
    for done, index in enumerate(order):
        shares[index] = min(sizes[index], left // (len(order) - done))
        left -= shares[index]
    return shares


class KafkaWindow:
    """A consumer that reads ranges of offsets, and what the cluster says about its topics."""

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.stalled: list[str] = []
        """Partitions the last read gave up on (they sent nothing for ``IDLE_TIMEOUT_S``)."""
        extra = {"enable.partition.eof": True, "fetch.wait.max.ms": 50}
        self.consumer = Consumer(
            consumer_config(settings, settings.consumer_group("trace"), **extra)
        )
        try:
            metadata: Any = self.consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            reason = self._reason(exc)
            self.consumer.close()
            raise TraceError(
                f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {reason}"
            ) from None
        self.topics: dict[str, list[int]] = {
            name: sorted(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None
        }

    def _reason(self, exc: KafkaException) -> str:
        return redact(failure_reason(self.consumer, exc), self.settings.secret_values())

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> KafkaWindow:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def partitions(self, topic: str) -> list[int]:
        """The topic's partitions; none when it does not exist."""
        return self.topics.get(topic, [])

    def ranges(self, topic: str, partitions: Sequence[int], since_ms: int) -> list[Range]:
        """Each partition from its first message at or after ``since_ms`` to its end now."""
        if not partitions:
            return []
        asked = [TopicPartition(topic, p, since_ms) for p in partitions]
        found = settled(
            lambda: _answered(
                topic, self.consumer.offsets_for_times(asked, timeout=self.timeout_s)
            ),
            what=f"find the offsets of {topic} at the start of the window",
            timeout_s=self.timeout_s,
            reason=self._reason,
            error=TraceError,
        )
        ranges = []
        for tp in found:
            low, high = self._watermarks(topic, tp.partition)
            start = high if tp.offset < 0 else max(tp.offset, low)
            ranges.append(Range(topic, tp.partition, start, high))
        return ranges

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        low, high = settled(
            lambda: self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout_s, cached=False
            ),
            what=f"read the offsets of {topic}[{partition}]",
            timeout_s=self.timeout_s,
            reason=self._reason,
            error=TraceError,
        )
        return int(low), int(high)

    def committed(self, group: str, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The group's committed offsets on ``topic`` (partitions without one are left out)."""
        if not partitions:
            return {}
        probe = Consumer(consumer_config(self.settings, group))
        try:
            answer = settled(
                lambda: probe.committed(
                    [TopicPartition(topic, p) for p in partitions], timeout=self.timeout_s
                ),
                what=f"read the offsets of {group}",
                timeout_s=self.timeout_s,
                reason=self._reason,
                error=TraceError,
            )
        finally:
            probe.close()
        return {tp.partition: tp.offset for tp in answer if tp.offset >= 0}

    def read(
        self, ranges: Sequence[Range], progress: Callable[[int], None] = lambda _: None
    ) -> Iterator[Message]:
        """Every message in ``ranges``, partitions interleaved as the broker serves them;
        ``progress`` hears how many offsets each batch covered. Each partition is let go once
        done, and given up on (named in :attr:`stalled`) once it has sent nothing for
        ``IDLE_TIMEOUT_S``: a partition still assigned after its end would keep the read busy with
        live traffic while another never reaches its own."""
        ends = {(r.topic, r.partition): r.end for r in ranges if r.size}
        self.stalled = []
        if not ends:
            return
        self.consumer.assign(
            [TopicPartition(r.topic, r.partition, r.start) for r in ranges if r.size]
        )
        remaining = PartitionsLeft(self.consumer, ends, IDLE_TIMEOUT_S)
        try:
            while remaining:
                messages = self.consumer.consume(500, 0.1)
                taken = 0
                for message in messages:
                    place = (message.topic() or "", message.partition() or 0)
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.done(place)
                        elif not error.retriable():
                            raise TraceError(f"cannot read {place[0]}[{place[1]}]: {error.str()}")
                        continue
                    offset = message.offset() or 0
                    if not remaining.heard(place, offset):
                        continue
                    taken += 1
                    yield message
                    if offset + 1 >= ends[place]:
                        remaining.done(place)
                if taken:
                    progress(taken)
                self.stalled += remaining.give_up_idle()
        finally:
            self.consumer.unassign()


def _answered(topic: str, found: list[TopicPartition]) -> list[TopicPartition]:
    """The look-up's answer, or its first partition's error as the whole call's: a partition
    that could not answer comes back with offset -1 (or the time asked), which would otherwise
    read as an empty range. ``settled`` then waits out a leader being elected."""
    for tp in found:
        error: KafkaError | None = tp.error
        if error is not None:
            raise KafkaException(
                KafkaError(
                    error.code(),
                    f"{topic}[{tp.partition}]: {error.str()}",
                    retriable=error.retriable(),
                )
            )
    return found
