"""The pipeline's topics: which exist, how they are configured, and how to create them.

Auto-creation is off on a well-run cluster, so the project owns its topic bootstrap: names from
the settings, partitions from ``CLAIMX_TOPIC_PARTITIONS``, retention from the runbook (main
topics 7 days, DLQs 30 days) except for the retry tiers, whose retention follows their delays:
a tier keeps messages twice its delay plus ``CLAIMX_RETRY_RETENTION_ALLOWANCE_SECONDS``, so
neither a long delay nor a retry stage that is down for a while lets Kafka delete a message
before it is released.

Retention is only ever raised on a topic that exists: a longer one (or ``-1``, forever) that an
operator set by hand stays, because lowering it could delete messages nobody has read.
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
    ResourceType,
    TopicMetadata,
)

from claimx_flow.config import Settings
from claimx_flow.errors import KafkaAdminError, KafkaAdminTimeout
from claimx_flow.kafka.clients import client_config, failure_reason, settled

TopicRole = Literal["main", "retry", "dlq"]

RETENTION_MS: dict[TopicRole, int] = {
    "main": 7 * 24 * 3600 * 1000,
    "dlq": 30 * 24 * 3600 * 1000,
}
"""Retention by role; a retry tier's follows its delay (:func:`tier_retention_ms`)."""

ADMIN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: TopicRole
    partitions: int
    replication_factor: int
    tier_retention_ms: int | None = None
    """A retry tier's retention (it depends on the tier's delay, not only on its role)."""

    @property
    def retention_ms(self) -> int:
        if self.tier_retention_ms is not None:
            return self.tier_retention_ms
        if self.role not in RETENTION_MS:
            raise ValueError(f"retry tier {self.name} needs its retention from its delay")
        return RETENTION_MS[self.role]


@dataclass(frozen=True)
class Retention:
    """How long a topic keeps messages, as the broker says: ``retention.ms`` (-1: forever)
    and ``cleanup.policy``."""

    ms: int
    policy: str = "delete"

    @property
    def compacts(self) -> bool:
        """Compaction keeps only the last message of a key: the others are lost to a tier."""
        return "compact" in self.policy.split(",")

    def keeps(self, seconds: int) -> bool:
        """Whether every message stays at least ``seconds``."""
        return not self.compacts and (self.ms < 0 or self.ms >= seconds * 1000)


def tier_retention_ms(settings: Settings, delay_s: int) -> int:
    """Twice the delay plus the allowance: a message is due after one delay, and the retry
    stage may be down for the allowance (or behind by another delay) before it is released."""
    return (2 * delay_s + settings.claimx_retry_retention_allowance_seconds) * 1000


@dataclass(frozen=True)
class TopicState:
    """What the cluster says about one topic."""

    name: str
    partitions: int
    messages: int
    retention_ms: int | None
    replicas: int = 0
    """The fewest replicas of any of its partitions (a broker lost loses a partition of 1)."""


def pipeline_topics(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    """Every topic of the pipeline, in the order the data flows through them."""
    count = partitions or settings.claimx_topic_partitions
    rf = settings.claimx_topic_replication_factor

    def spec(name: str, role: TopicRole) -> TopicSpec:
        return TopicSpec(name, role, count, rf)

    def tiers(names: list[str]) -> list[TopicSpec]:
        return [
            TopicSpec(name, "retry", count, rf, tier_retention_ms(settings, delay))
            for name, delay in zip(names, settings.retry_delays, strict=True)
        ]

    return [
        spec(settings.claimx_events_topic, "main"),
        spec(settings.claimx_enrichment_pending_topic, "main"),
        *tiers(settings.enrichment_retry_topics),
        spec(settings.claimx_downloads_pending_topic, "main"),
        *tiers(settings.download_retry_topics),
        spec(settings.claimx_downloads_cached_topic, "main"),
        spec(settings.claimx_downloads_results_topic, "main"),
        spec(settings.claimx_events_dlq_topic, "dlq"),
        spec(settings.claimx_enrichment_dlq_topic, "dlq"),
        spec(settings.claimx_downloads_dlq_topic, "dlq"),
    ]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def ensure_topics(admin: AdminClient, specs: Iterable[TopicSpec]) -> dict[str, str]:
    """Create missing topics and raise retention where it is shorter than the spec's; safe to
    run any number of times.

    Returns, per topic, ``"created"``, ``"raised"`` (its retention was) or ``"exists"``.
    Existing topics keep their partition count (shrinking is impossible, growing would move
    keys between partitions), their cleanup policy and any longer retention.
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
                    config={"retention.ms": str(s.retention_ms), "cleanup.policy": "delete"},
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
            except TimeoutError:
                raise _no_answer(f"creating topic {name}") from None
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # lost a race: fine
                    raise KafkaAdminError(f"cannot create topic {name}: {exc}") from None
                outcome[name] = "exists"
    for name in _raise_retention(admin, [s for s in specs if outcome[s.name] == "exists"]):
        outcome[name] = "raised"
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


def _raise_retention(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """Set the spec's retention where the topic keeps messages for less; returns those topics.

    Never lowers: a longer retention, or -1 (forever), was someone's decision to keep more.
    """
    current = topic_retention(admin, [s.name for s in specs])
    short = [s for s in specs if s.name in current and 0 <= current[s.name].ms < s.retention_ms]
    if not short:
        return []
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
        for s in short
    ]
    for resource, future in admin.incremental_alter_configs(resources).items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except TimeoutError:
            raise _no_answer(f"setting the retention of {resource.name}") from None
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot set retention on {resource.name}: {exc}") from None
    _await_retention(admin, {s.name: s.retention_ms for s in short})
    return [s.name for s in short]


def _await_retention(
    admin: AdminClient, wanted: dict[str, int], timeout_s: float = ADMIN_TIMEOUT_S
) -> None:
    """Wait until the broker reports the raised retention: a change goes through the
    controller first, and a check run right after ``claimx topics create`` must see it."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = topic_retention(admin, list(wanted))
        behind = [n for n, ms in wanted.items() if n in current and 0 <= current[n].ms < ms]
        if not behind:
            return
        if time.monotonic() > deadline:
            raise KafkaAdminError(f"retention not raised after {timeout_s:.0f}s: {behind}")
        time.sleep(0.2)


def topic_names(settings: Settings) -> list[str]:
    """Every topic on the cluster."""
    return _list_topic_names(admin_client(settings))


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
    retention = topic_retention(admin, present)
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
            kept = retention.get(name)
            states.append(
                TopicState(
                    name,
                    len(topic.partitions),
                    messages,
                    kept.ms if kept else None,
                    fewest_replicas(topic),
                )
            )
        return states
    finally:
        consumer.close()


def fewest_replicas(topic: TopicMetadata) -> int:
    """The fewest replicas any partition of ``topic`` has (0 for a topic with none)."""
    return min((len(p.replicas) for p in topic.partitions.values()), default=0)


def watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """Low and high offsets, waiting out the moments after creation when no leader serves yet."""
    low, high = settled(
        lambda: consumer.get_watermark_offsets(partition, timeout=ADMIN_TIMEOUT_S, cached=False),
        what=f"read offsets of {partition.topic}[{partition.partition}]",
        timeout_s=ADMIN_TIMEOUT_S,
    )
    return int(low), int(high)


def topic_retention(admin: AdminClient, names: list[str]) -> dict[str, Retention]:
    """Retention and cleanup policy of each topic that exists, as the broker applies them
    (the topic's own setting, else the broker's default)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    result = {}
    for resource, future in admin.describe_configs(resources).items():
        try:
            entries = future.result(timeout=ADMIN_TIMEOUT_S)
        except TimeoutError:
            raise _no_answer(f"reading the retention of {resource.name}") from None
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot read the retention of {resource.name}: {exc}") from None
        ms = entries.get("retention.ms")
        if ms is None or ms.value is None:
            continue
        policy = entries.get("cleanup.policy")
        result[resource.name] = Retention(
            int(ms.value), policy.value if policy is not None and policy.value else "delete"
        )
    return result


def max_message_bytes(settings: Settings, topic: str) -> int:
    """The topic's ``max.message.bytes``: the largest record batch its broker accepts."""
    admin = admin_client(settings)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource])[resource].result(timeout=ADMIN_TIMEOUT_S)
    except TimeoutError:
        raise _no_answer(f"reading the settings of topic {topic}") from None
    except KafkaException as exc:
        raise KafkaAdminError(
            f"cannot read the settings of topic {topic}: {failure_reason(admin, exc)}"
        ) from None
    return int(configs["max.message.bytes"].value)


def _no_answer(doing: str) -> KafkaAdminTimeout:
    return KafkaAdminTimeout(
        f"Kafka did not answer {doing} within {ADMIN_TIMEOUT_S:g}s (a controller missing, a "
        "broker busy or going down)"
    )
