"""The pipeline's topics: which exist, how they are configured, and how to create them.

Auto-creation is off on a well-run cluster, so the project owns its topic bootstrap: names from
the settings, partitions from ``CLAIMX_TOPIC_PARTITIONS``, retention from the runbook (main
topics 7 days, retry tiers 1 hour, DLQs 30 days).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from claimx_flow.config import Settings
from claimx_flow.errors import KafkaAdminError
from claimx_flow.kafka.clients import client_config, failure_reason, settled

TopicRole = Literal["main", "retry", "dlq"]

RETENTION_MS: dict[TopicRole, int] = {
    "main": 7 * 24 * 3600 * 1000,
    "retry": 3600 * 1000,
    "dlq": 30 * 24 * 3600 * 1000,
}

ADMIN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: TopicRole
    partitions: int
    replication_factor: int

    @property
    def retention_ms(self) -> int:
        return RETENTION_MS[self.role]


@dataclass(frozen=True)
class TopicState:
    """What the cluster says about one topic."""

    name: str
    partitions: int
    messages: int
    retention_ms: int | None


def pipeline_topics(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    """Every topic of the pipeline, in the order the data flows through them."""
    count = partitions or settings.claimx_topic_partitions
    rf = settings.claimx_topic_replication_factor

    def spec(name: str, role: TopicRole) -> TopicSpec:
        return TopicSpec(name, role, count, rf)

    return [
        spec(settings.claimx_events_topic, "main"),
        spec(settings.claimx_enrichment_pending_topic, "main"),
        *(spec(t, "retry") for t in settings.enrichment_retry_topics),
        spec(settings.claimx_downloads_pending_topic, "main"),
        *(spec(t, "retry") for t in settings.download_retry_topics),
        spec(settings.claimx_downloads_cached_topic, "main"),
        spec(settings.claimx_downloads_results_topic, "main"),
        spec(settings.claimx_events_dlq_topic, "dlq"),
        spec(settings.claimx_enrichment_dlq_topic, "dlq"),
        spec(settings.claimx_downloads_dlq_topic, "dlq"),
    ]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def ensure_topics(admin: AdminClient, specs: Iterable[TopicSpec]) -> dict[str, str]:
    """Create missing topics and set retention on all of them; safe to run any number of times.

    Returns, per topic, ``"created"`` or ``"exists"``. Existing topics keep their partition
    count (shrinking is impossible, growing would move keys between partitions).
    """
    specs = list(specs)
    existing = set(_list_topic_names(admin))
    missing = [s for s in specs if s.name not in existing]
    outcome = {s.name: "exists" for s in specs if s.name in existing}
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config={"retention.ms": str(s.retention_ms)},
                )
                for s in missing
            ],
            operation_timeout=ADMIN_TIMEOUT_S,
            request_timeout=ADMIN_TIMEOUT_S,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=ADMIN_TIMEOUT_S)
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race: fine
                    raise KafkaAdminError(f"cannot create topic {name}: {exc}") from None
                outcome[name] = "exists"
    _set_retention(admin, [s for s in specs if outcome[s.name] == "exists"])
    await_leaders(admin, [s.name for s in specs])
    return outcome


def await_leaders(admin: AdminClient, names: list[str], timeout_s: float = ADMIN_TIMEOUT_S) -> None:
    """Wait until every partition of ``names`` has a leader, so the topics are usable at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        waiting = [
            name
            for name in names
            if name not in metadata.topics
            or metadata.topics[name].error is not None
            or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise KafkaAdminError(f"topics without a leader after {timeout_s:.0f}s: {waiting}")
        time.sleep(0.2)


def _set_retention(admin: AdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    resources = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            s.name,
            incremental_configs=[
                ConfigEntry(
                    "retention.ms",
                    str(s.retention_ms),
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        for s in specs
    ]
    for resource, future in admin.incremental_alter_configs(resources).items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot set retention on {resource.name}: {exc}") from None


def _list_topic_names(admin: AdminClient) -> list[str]:
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        reason = failure_reason(admin, exc)
        raise KafkaAdminError(f"cannot reach Kafka to list topics: {reason}") from None
    return list(metadata.topics)


def describe_topics(settings: Settings, names: Iterable[str]) -> list[TopicState]:
    """Partitions, message counts (high minus low watermark) and retention of each topic.

    A topic that does not exist is reported with 0 partitions.
    """
    names = list(names)
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaAdminError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: "
            f"{failure_reason(admin, exc)}"
        ) from None
    present = [n for n in names if n in metadata.topics]
    retention = _retention_of(admin, present)
    consumer = Consumer({**client_config(settings), "group.id": "claimx-topics-inspector"})
    try:
        states = []
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None:
                states.append(TopicState(name, 0, 0, None))
                continue
            messages = 0
            for partition in topic.partitions:
                low, high = watermarks(consumer, TopicPartition(name, partition))
                messages += max(high - low, 0)
            states.append(TopicState(name, len(topic.partitions), messages, retention.get(name)))
        return states
    finally:
        consumer.close()


def watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """Low and high offsets, waiting out the moments after creation when no leader serves yet."""
    low, high = settled(
        lambda: consumer.get_watermark_offsets(partition, timeout=ADMIN_TIMEOUT_S, cached=False),
        what=f"read offsets of {partition.topic}[{partition.partition}]",
        timeout_s=ADMIN_TIMEOUT_S,
    )
    return int(low), int(high)


def _retention_of(admin: AdminClient, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    result = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = future.result(timeout=ADMIN_TIMEOUT_S)
        entry = entries.get("retention.ms")
        if entry is not None and entry.value is not None:
            result[resource.name] = int(entry.value)
    return result
