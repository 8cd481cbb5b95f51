"""Reading what a stage wrote, and writing what it is to read, without going through a stage.

Output timestamps are the producer's create times (librdkafka stamps a message when
``produce()`` is called), so the first and last message of each partition bound the moment the
stage produced its first and last output.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import client_config, produce_or_wait, producer_config
from claimx_flow.kafka.topics import await_leaders

Headers = list[tuple[str, bytes]]
Outbound = tuple[bytes | None, bytes, Headers | None]


@dataclass(frozen=True)
class Span:
    """How many messages a topic holds and the create times of its first and last (epoch s)."""

    count: int
    first: float | None
    last: float | None


@dataclass(frozen=True)
class Read:
    timestamp: float
    key: bytes | None
    value: bytes | None
    headers: Headers


def _consumer(settings: Settings, **extra: Any) -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **extra,
        }
    )


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=15)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise ClaimxError(f"topic {topic} is missing")
    return sorted(described.partitions)


def count(settings: Settings, topic: str) -> int:
    """Messages in ``topic`` (high minus low watermark over its partitions)."""
    consumer = _consumer(settings)
    try:
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions_of(consumer, topic)
            )
        )
    finally:
        consumer.close()


def span(settings: Settings, topic: str) -> Span:
    """Count and first/last create time, reading two messages per partition at most."""
    consumer = _consumer(settings)
    try:
        total, firsts, lasts = 0, [], []
        for partition in partitions_of(consumer, topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            total += high - low
            firsts.append(_timestamp_at(consumer, topic, partition, low))
            lasts.append(_timestamp_at(consumer, topic, partition, high - 1))
        return Span(total, min(firsts, default=None), max(lasts, default=None))
    finally:
        consumer.close()


def _timestamp_at(consumer: Consumer, topic: str, partition: int, offset: int) -> float:
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        return float(msg.timestamp()[1]) / 1000
    raise ClaimxError(f"could not read {topic}[{partition}]@{offset}")


def read_all(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[Read]:
    """Every message of ``topic`` with its create time (epoch seconds)."""
    consumer = _consumer(settings, **{"fetch.max.bytes": 16 * 1024 * 1024})
    try:
        parts = partitions_of(consumer, topic)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        reads: list[Read] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(2000, 0.2):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(int(msg.partition() or 0))
                    continue
                reads.append(
                    Read(
                        float(msg.timestamp()[1]) / 1000,
                        msg.key(),
                        msg.value(),
                        _headers(msg.headers()),
                    )
                )
        return reads
    finally:
        consumer.close()


def _headers(raw: Any) -> Headers:
    """Headers as (name, bytes) pairs; a header without a value becomes ``b""``."""
    return [(name, value or b"") for name, value in (raw or [])]


def produce(
    settings: Settings,
    topic: str,
    messages: Iterable[Outbound],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Produce every message and fail unless Kafka stored each one."""
    producer = Producer(producer_config(settings))
    failed: list[str] = []

    def delivered(error: KafkaError | None, _msg: Message) -> None:
        if error is not None:
            failed.append(str(error))

    sent = 0
    for key, value, headers in messages:
        wire: list[tuple[str, str | bytes | None]] | None = list(headers) if headers else None
        produce_or_wait(producer, topic, value=value, key=key, headers=wire, on_delivery=delivered)
        sent += 1
        if sent % 5000 == 0:
            producer.poll(0)
            if on_progress is not None:
                on_progress(sent)
    remaining = producer.flush(120)
    if remaining or failed:
        raise ClaimxError(f"{remaining + len(failed)} of {sent} messages not stored in {topic}")
    if on_progress is not None:
        on_progress(sent)
    return sent


def create_topic(settings: Settings, name: str, partitions: int) -> str:
    admin = AdminClient(client_config(settings))
    future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    future[name].result(timeout=30)
    await_leaders(admin, [name])
    return name


def delete_topics(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (a benchmark's uuid prefix)."""
    admin = AdminClient(client_config(settings))
    names = [name for name in admin.list_topics(timeout=15).topics if name.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=30)


def delta_commit_times(tables_dir: Path) -> list[float]:
    """Modification times (epoch s) of every Delta commit under ``tables_dir``, sorted."""
    if not tables_dir.exists():
        return []
    return sorted(p.stat().st_mtime for p in tables_dir.glob("*/_delta_log/*.json"))


def delta_rows(tables_dir: Path) -> dict[str, int]:
    """Rows per Delta table under ``tables_dir``."""
    from deltalake import DeltaTable

    rows = {}
    for log_dir in sorted(tables_dir.glob("*/_delta_log")):
        table = DeltaTable(str(log_dir.parent.resolve()))
        rows[log_dir.parent.name] = int(table.to_pyarrow_dataset().count_rows())
    return rows


class TopicCounter:
    """Counts a topic's messages again and again with one client (for polling loops)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = _consumer(settings)
        self._parts = [TopicPartition(topic, p) for p in partitions_of(self._consumer, topic)]

    def count(self) -> int:
        total = 0
        for part in self._parts:
            low, high = self._consumer.get_watermark_offsets(part, timeout=10, cached=False)
            total += high - low
        return total

    def close(self) -> None:
        self._consumer.close()
