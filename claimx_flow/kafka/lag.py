"""Consumer lag per stage, as ``kafka-consumer-groups --describe`` and KEDA see it once a group
has committed; before that, and past what retention deleted, from the first offset held.

Each stage publishes the offsets of its recovery snapshots to its consumer group
(``claimx-ingester``, ``claimx-enricher``, …); lag is the distance from there to the end of
each input partition. It trails the stage by up to a snapshot interval, which is also how
far a restart would rewind.

The dead-letter queues have no consumer group to lag behind: their depth is what is still in
them, high minus low watermark per partition. Replays copy records out and leave them in place
(each replay session keeps its own position), so only a purge (``delete_records`` raises the low
watermark) or the 30-day retention takes records out; that is the number ``claimx dlq list``
counts, ``claimx lag`` shows and the stages export as ``claimx_dlq_depth``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.errors import KafkaAdminError
from claimx_flow.kafka.clients import consumer_config, failure_reason, settled
from claimx_flow.kafka.positions import group_offsets
from claimx_flow.kafka.topics import ADMIN_TIMEOUT_S, admin_client, watermarks


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end: int
    committed: int | None
    low: int = 0
    """The partition's first offset still held: below it, retention has deleted."""

    @property
    def lag(self) -> int:
        """What the group has yet to read: from its offset, or from the first offset held when
        it has none (a stage starts at the earliest) or retention deleted past it. Never below
        0: a group committed past the end (``past_end``) has nothing to read."""
        start = max(self.committed if self.committed is not None else self.low, self.low)
        return max(self.end - start, 0)

    @property
    def past_end(self) -> bool:
        """The group's offset is above the partition's end: the topic was deleted and made
        again, and a position from before (a stage publishes what its recovery snapshots
        kept) sits above the new end. A lag there would be negative, and means nothing."""
        return self.committed is not None and self.committed > self.end


def stage_lag(settings: Settings, stage: str, also: Sequence[str] = ()) -> list[PartitionLag]:
    """The stage group's lag on each partition of its inputs, and of ``also`` (topics it reads
    beyond the catalog's: the retry stage drains orphan tiers, which ``routing`` names)."""
    spec = catalog.stage(stage)
    group = settings.consumer_group(spec.consumer)
    topics = list(dict.fromkeys([*catalog.input_topics(settings, spec), *also]))
    admin = admin_client(settings)
    try:  # first: an unreachable broker is one clear error, not a timeout deeper down
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaAdminError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: "
            f"{failure_reason(admin, exc)}"
        ) from None
    places = [
        (topic, partition)
        for topic in topics
        if (described := metadata.topics.get(topic))
        for partition in sorted(described.partitions)
    ]
    # The stage's own group, asked as a consumer asks (never subscribed: it joins nothing).
    consumer = Consumer(consumer_config(settings, group))
    try:
        committed = group_offsets(consumer, group, places, ADMIN_TIMEOUT_S)
        rows = []
        for topic, partition in places:
            low, end = watermarks(consumer, TopicPartition(topic, partition))
            rows.append(
                PartitionLag(group, topic, partition, end, committed.get((topic, partition)), low)
            )
        return rows
    finally:
        consumer.close()


@dataclass(frozen=True)
class DlqPartition:
    """One DLQ partition's readable range: records at ``low <= offset < high``."""

    topic: str
    partition: int
    low: int
    high: int

    @property
    def depth(self) -> int:
        return max(self.high - self.low, 0)


def dlq_topics(settings: Settings, stages: Iterable[str] = catalog.STAGE_NAMES) -> list[str]:
    """The DLQs these stages write, each once, in pipeline order."""
    specs = [catalog.stage(name) for name in stages]
    return list(dict.fromkeys(catalog.topic_name(settings, spec.dlq) for spec in specs if spec.dlq))


def dlq_partitions(
    admin: AdminClient, topics: list[str], timeout_s: float = ADMIN_TIMEOUT_S
) -> list[DlqPartition]:
    """Each partition of ``topics`` with its low and high watermark: two ListOffsets requests
    for all of them, on a client the caller keeps. A topic that does not exist has no rows."""
    metadata = admin.list_topics(timeout=timeout_s)
    asked = []
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            continue
        asked += [TopicPartition(topic, p) for p in sorted(described.partitions)]
    if not asked:
        return []
    offset_spec: Any = OffsetSpec  # untyped in confluent-kafka
    lows = _offsets(admin, asked, offset_spec.earliest(), timeout_s)
    highs = _offsets(admin, asked, offset_spec.latest(), timeout_s)
    return [
        DlqPartition(
            tp.topic, tp.partition, lows[tp.topic, tp.partition], highs[tp.topic, tp.partition]
        )
        for tp in asked
    ]


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: Any, timeout_s: float
) -> dict[tuple[str, int], int]:
    def ask() -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
            request_timeout=timeout_s,
        )
        return {
            (tp.topic, tp.partition): int(future.result(timeout=timeout_s).offset)
            for tp, future in futures.items()
        }

    return settled(ask, what="read the offsets of the DLQs", timeout_s=timeout_s, pause_s=0.2)


def dlq_depths(partitions: Iterable[DlqPartition]) -> dict[str, int]:
    """Records still in each DLQ: the partitions' depths summed per topic."""
    depths: dict[str, int] = {}
    for row in partitions:
        depths[row.topic] = depths.get(row.topic, 0) + row.depth
    return depths


def read_dlq_partitions(settings: Settings, topics: list[str]) -> list[DlqPartition]:
    """:func:`dlq_partitions` on a client of its own; an unreachable broker is one clear error."""
    admin = admin_client(settings)
    try:
        return dlq_partitions(admin, topics)
    except KafkaException as exc:
        raise KafkaAdminError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: "
            f"{failure_reason(admin, exc)}"
        ) from None


class DlqDepthReader:
    """The depth of some DLQs, read again and again through one admin client (a stage's
    background poll: no new client, consumer or group per read)."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.settings = settings
        self.topics = topics
        self._admin: AdminClient | None = None

    def read(self, timeout_s: float = ADMIN_TIMEOUT_S) -> dict[str, int]:
        """Depth per existing topic; raises ``KafkaException``/``KafkaAdminError`` when Kafka
        does not answer."""
        if self._admin is None:
            self._admin = admin_client(self.settings)
        return dlq_depths(dlq_partitions(self._admin, self.topics, timeout_s))
