"""A stage's published input positions: the offset in its consumer group, and when it was
snapshotted.

A stage's Kafka source publishes each partition's offset to the consumer group once the outputs
it covers are done (``Progress`` in ``operators/kafka.py``), with, as commit metadata, the wall
time of the snapshot it comes from. A start without a recovery snapshot resumes from the offset;
the time says since when a run may have sent outputs that no published position covers
(``claimx_flow.routing.ledger``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from claimx_flow.kafka.clients import settled

TIMEOUT_S = 30.0
REFRESH_S = 60.0
"""A quiet partition's position is published again this often, so its time stays recent: a
running stage's newest published time is never older than this and a couple of epochs."""

_METADATA_PREFIX = "snapshot_at="


def position_metadata(at: float) -> str:
    """A published offset's commit metadata: the wall time (Unix seconds) of its snapshot."""
    return f"{_METADATA_PREFIX}{at:.3f}"


def snapshot_time(metadata: str | None) -> float | None:
    """The time ``position_metadata`` wrote, or None (an offset committed by other means)."""
    if not metadata or not metadata.startswith(_METADATA_PREFIX):
        return None
    try:
        return float(metadata.removeprefix(_METADATA_PREFIX))
    except ValueError:
        return None


@dataclass(frozen=True)
class CommittedPosition:
    """A partition's offset in its consumer group, and the time of the snapshot it comes from
    (None when it was published by other means than the stage's source)."""

    offset: int
    snapshot_at: float | None


def committed_positions(
    consumer: Consumer, topic: str, partitions: Iterable[int]
) -> dict[int, CommittedPosition]:
    """The consumer group's published position of each partition that has one."""
    wanted = [TopicPartition(topic, p) for p in partitions]
    committed = _committed(consumer, wanted, f"read the committed offsets of {topic}", TIMEOUT_S)
    return {
        found.partition: CommittedPosition(found.offset, snapshot_time(found.metadata))
        for found in committed
        if found.offset is not None and found.offset >= 0
    }


def group_offsets(
    consumer: Consumer,
    group: str,
    places: Iterable[tuple[str, int]],
    timeout_s: float = TIMEOUT_S,
) -> dict[tuple[str, int], int]:
    """The committed offset of each ``(topic, partition)`` that has one, in the group of
    ``consumer`` (a consumer made with that ``group.id`` that never subscribes, so it never
    joins the group), waiting out a coordinator that is still loading.

    Not the admin client's ListConsumerGroupOffsets: when the broker answers that the group's
    coordinator is not ready (a new group, a broker just started), librdkafka crashes the
    whole process in it (SIGSEGV in ``rd_kafka_cgrp_op``: librdkafka#5040,
    confluent-kafka-python#1982), where a consumer's OffsetFetch looks the coordinator up again.
    """
    wanted = [TopicPartition(topic, partition) for topic, partition in places]
    committed = _committed(consumer, wanted, f"read the offsets of {group}", timeout_s)
    return {
        (found.topic, found.partition): found.offset
        for found in committed
        if found.offset is not None and found.offset >= 0
    }


def _committed(
    consumer: Consumer, wanted: list[TopicPartition], what: str, timeout_s: float
) -> list[TopicPartition]:
    """``consumer.committed(wanted)``, waiting out a coordinator that is still loading and a
    partition that answers with a passing error (a transaction's offsets not yet settled); one
    that keeps an error is an error, never "no offset", which would read the whole topic again
    or show it all as lag."""
    if not wanted:
        return []

    def ask() -> list[TopicPartition]:
        answer: list[TopicPartition] = consumer.committed(wanted, timeout=timeout_s)
        for found in answer:
            if found.error is not None:
                raise KafkaException(
                    KafkaError(
                        found.error.code(),
                        f"{found.topic}[{found.partition}]: {found.error.str()}",
                        retriable=found.error.retriable(),
                    )
                )
        return answer

    return settled(ask, what=what, timeout_s=timeout_s)
