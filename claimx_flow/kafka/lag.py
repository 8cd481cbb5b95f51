"""Consumer lag per stage, as ``kafka-consumer-groups --describe`` and KEDA see it.

Each stage publishes the offsets of its recovery snapshots to its consumer group
(``claimx-ingester``, ``claimx-enricher``, …); lag is the distance from there to the end of
each input partition. It trails the stage by up to a snapshot interval, which is also how
far a restart would rewind.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.errors import KafkaAdminError
from claimx_flow.kafka.clients import client_config, failure_reason, settled
from claimx_flow.kafka.topics import ADMIN_TIMEOUT_S, admin_client, watermarks


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        return self.end - (self.committed if self.committed is not None else 0)


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, waiting out a coordinator that is still loading."""
    answer = settled(
        lambda: admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[
            group
        ].result(timeout=ADMIN_TIMEOUT_S),
        what=f"read the offsets of {group}",
        timeout_s=ADMIN_TIMEOUT_S,
        pause_s=0.5,
    )
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions if tp.offset >= 0}


def stage_lag(settings: Settings, stage: str) -> list[PartitionLag]:
    spec = catalog.stage(stage)
    group = settings.consumer_group(spec.consumer)
    topics = catalog.input_topics(settings, spec)
    admin = admin_client(settings)
    try:  # first: an unreachable broker is one clear error, not a timeout deeper down
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaAdminError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: "
            f"{failure_reason(admin, exc)}"
        ) from None
    committed = _committed(admin, group)
    consumer = Consumer({**client_config(settings), "group.id": f"{group}-lag-reader"})
    try:
        rows = []
        for topic in topics:
            described = metadata.topics.get(topic)
            for partition in sorted(described.partitions if described else []):
                _, end = watermarks(consumer, TopicPartition(topic, partition))
                rows.append(
                    PartitionLag(group, topic, partition, end, committed.get((topic, partition)))
                )
        return rows
    finally:
        consumer.close()
