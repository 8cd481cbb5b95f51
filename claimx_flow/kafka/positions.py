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

from confluent_kafka import Consumer, TopicPartition

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
    if not wanted:
        return {}
    committed = settled(  # a busy group coordinator answers "not yet" for a while
        lambda: consumer.committed(wanted, timeout=TIMEOUT_S),
        what=f"read the committed offsets of {topic}",
        timeout_s=TIMEOUT_S,
    )
    return {
        found.partition: CommittedPosition(found.offset, snapshot_time(found.metadata))
        for found in committed
        if found.offset is not None and found.offset >= 0
    }
