"""Kafka clients for the DLQ commands, and the one error type they raise.

Every client is built from ``kafka_config`` so SASL/SSL settings reach it. Error text comes from
librdkafka's error, never from the client configuration, and is redacted with the configured
secrets before it is shown.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import (
    client_config,
    consumer_config,
    failure_reason,
    producer_config,
    settled,
)
from claimx_flow.models import redact

DEFAULT_TIMEOUT_S = 10.0


class DlqError(ClaimxError):
    """A DLQ command cannot go on: Kafka unreachable, a topic missing, a write not confirmed."""


def kafka_reason(settings: Settings, exc: BaseException) -> str:
    """librdkafka's own words for ``exc``, with every configured secret masked."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        text = exc.args[0].str()
    else:
        text = str(exc) or type(exc).__name__
    return redact(text, settings.secret_values())


def reader(settings: Settings, group: str | None = None) -> Consumer:
    """A consumer that only looks: assigned partitions, no commits, stops at each partition end.

    ``group`` matters only to read a replay session's committed progress.
    """
    group_id = group or settings.consumer_group("dlq-reader")
    # A short fetch wait: the broker otherwise holds each fetch of an idle partition for 500 ms
    # before it can say the partition has ended.
    extra = {"enable.partition.eof": True, "fetch.wait.max.ms": 50}
    return Consumer(consumer_config(settings, group_id, **extra))


def checked_producer(settings: Settings) -> Producer:
    """Idempotent and acks=all; the caller checks every delivery before it moves on."""
    return Producer(producer_config(settings))


def transactional_producer(settings: Settings, transactional_id: str) -> Producer:
    """Idempotent, acks=all and transactional: a chunk of replays and its progress are one write."""
    return Producer(producer_config(settings, **{"transactional.id": transactional_id}))


def admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def cluster_topics(settings: Settings, client: Consumer, timeout_s: float) -> dict[str, Any]:
    """Every topic's metadata; an unreachable cluster is a DlqError naming only its address."""
    try:
        metadata: Any = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        reason = redact(failure_reason(client, exc), settings.secret_values())
        raise DlqError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {reason}"
        ) from None
    return dict(metadata.topics)


def topic_partitions(
    settings: Settings, client: Consumer, topic: str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[int]:
    """The partition numbers of ``topic``; a missing topic is a DlqError."""
    return partitions_of(settings, cluster_topics(settings, client, timeout_s), topic)


def partitions_of(settings: Settings, topics: dict[str, Any], topic: str) -> list[int]:
    """The partition numbers of ``topic`` in metadata already fetched; missing is a DlqError."""
    described = topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise DlqError(
            f"topic {topic} does not exist on {settings.kafka_bootstrap_servers} "
            "(create the pipeline's topics with `claimx topics create`)"
        )
    return sorted(described.partitions)


def watermarks(
    settings: Settings, client: Consumer, topic: str, partitions: list[int], timeout_s: float
) -> dict[int, tuple[int, int]]:
    """Low and high watermark of each partition: what a reader can still see."""
    return {
        p: _watermark(settings, client, TopicPartition(topic, p), timeout_s) for p in partitions
    }


def _watermark(
    settings: Settings, client: Consumer, partition: TopicPartition, timeout_s: float
) -> tuple[int, int]:
    low, high = settled(
        lambda: client.get_watermark_offsets(partition, timeout=timeout_s, cached=False),
        what=f"read offsets of {partition.topic}[{partition.partition}]",
        timeout_s=timeout_s,
        reason=lambda exc: kafka_reason(settings, exc),
        pause_s=0.1,
        error=DlqError,
    )
    return int(low), int(high)
