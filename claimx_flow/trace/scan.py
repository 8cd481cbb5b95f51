"""Reading a window of Kafka: from the offset of a moment to the end seen when the read began.

One consumer serves a whole trace. It only looks: partitions are assigned with explicit
offsets, nothing is committed, and a read stops at each partition's high watermark as it was
when the range was planned, so a busy topic cannot keep a trace reading. ``--limit`` caps the
messages read; a range over the cap keeps its newest messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import consumer_config, failure_reason, settled
from claimx_flow.models import redact

IDLE_TIMEOUT_S = 15.0
"""A partition that yields nothing this long while offsets remain below its end is given up."""


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
    """The ranges trimmed to at most ``limit`` messages in all, each keeping its newest ones in
    proportion to its size; and how many messages were left out."""
    total = sum(r.size for r in ranges)
    if total <= limit:
        return list(ranges), 0
    kept = []
    for r in ranges:
        quota = r.size * limit // total
        kept.append(replace(r, start=r.end - quota))
    return kept, total - sum(r.size for r in kept)


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
            lambda: self.consumer.offsets_for_times(asked, timeout=self.timeout_s),
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
        ``progress`` hears how many offsets each batch covered. Stops early (and says so in
        :attr:`stalled`) on partitions that give nothing for ``IDLE_TIMEOUT_S``."""
        ends = {(r.topic, r.partition): r.end for r in ranges if r.size}
        self.stalled = []
        if not ends:
            return
        self.consumer.assign(
            [TopicPartition(r.topic, r.partition, r.start) for r in ranges if r.size]
        )
        remaining = set(ends)
        try:
            last_seen = time.monotonic()
            while remaining:
                messages = self.consumer.consume(500, 0.1)
                if messages:
                    last_seen = time.monotonic()
                elif time.monotonic() - last_seen > IDLE_TIMEOUT_S:
                    self.stalled = [f"{t}[{p}]" for t, p in sorted(remaining)]
                    return
                taken = 0
                for message in messages:
                    place = (message.topic() or "", message.partition() or 0)
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(place)
                        elif not error.retriable():
                            raise TraceError(f"cannot read {place[0]}[{place[1]}]: {error.str()}")
                        continue
                    offset = message.offset() or 0
                    if place not in remaining or offset >= ends[place]:
                        remaining.discard(place)
                        continue
                    taken += 1
                    yield message
                    if offset + 1 >= ends[place]:
                        remaining.discard(place)
                if taken:
                    progress(taken)
        finally:
            self.consumer.unassign()
