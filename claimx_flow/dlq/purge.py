"""Purge: make DLQ records unreadable for every reader, not just move one group's offset.

``delete_records`` raises each partition's low watermark on the broker, so no consumer group,
present or future, can read below it. The cut is fixed when the plan is made (the high
watermark then, or the first record at or after ``--before``), so records that arrive while an
operator reads the confirmation prompt are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.dlq import clients
from claimx_flow.dlq.clients import DlqError, kafka_reason
from claimx_flow.dlq.queues import DlqName, dlq_topic
from claimx_flow.kafka.records import kafka_millis
from claimx_flow.models import redact


@dataclass(frozen=True)
class PartitionCut:
    """Records at ``low <= offset < cut`` of one partition go; ``high`` is the end at planning."""

    partition: int
    low: int
    high: int
    cut: int

    @property
    def removed(self) -> int:
        return max(self.cut - self.low, 0)


@dataclass(frozen=True)
class PurgePlan:
    dlq: DlqName
    topic: str
    before: datetime | None
    partitions: tuple[PartitionCut, ...]

    @property
    def removed(self) -> int:
        return sum(c.removed for c in self.partitions)


def plan_purge(
    settings: Settings,
    dlq: DlqName,
    before: datetime | None = None,
    timeout_s: float = clients.DEFAULT_TIMEOUT_S,
) -> PurgePlan:
    """What a purge would remove: everything now in the DLQ, or what came before ``before``."""
    topic = dlq_topic(settings, dlq)
    consumer = clients.reader(settings)
    try:
        partitions = clients.topic_partitions(settings, consumer, topic, timeout_s)
        bounds = clients.watermarks(settings, consumer, topic, partitions, timeout_s)
        cuts = {p: high for p, (_, high) in bounds.items()}
        if before is not None:
            cuts = _first_at_or_after(settings, consumer, topic, bounds, before, timeout_s)
    finally:
        consumer.close()
    return PurgePlan(
        dlq,
        topic,
        before,
        tuple(
            PartitionCut(p, low, high, min(max(cuts[p], low), high))
            for p, (low, high) in sorted(bounds.items())
        ),
    )


def _first_at_or_after(
    settings: Settings,
    consumer: Consumer,
    topic: str,
    bounds: dict[int, tuple[int, int]],
    before: datetime,
    timeout_s: float,
) -> dict[int, int]:
    millis = kafka_millis(before)
    asked = [TopicPartition(topic, p, millis) for p in sorted(bounds)]
    try:
        found = consumer.offsets_for_times(asked, timeout=timeout_s)
    except KafkaException as exc:
        raise DlqError(
            f"cannot look up offsets by time in {topic}: {kafka_reason(settings, exc)}"
        ) from None
    for tp in found:
        if tp.error is not None:  # its offset says nothing: -1 would cut the whole partition
            raise DlqError(
                f"cannot look up offsets by time in {topic}[{tp.partition}]: "
                f"{redact(tp.error.str(), settings.secret_values())}"
            )
    # -1: no record at or after the instant, so every record is older.
    return {tp.partition: bounds[tp.partition][1] if tp.offset < 0 else tp.offset for tp in found}


def execute_purge(
    settings: Settings, plan: PurgePlan, timeout_s: float = clients.DEFAULT_TIMEOUT_S
) -> int:
    """Delete the planned records; returns how many are gone."""
    targets = [TopicPartition(plan.topic, c.partition, c.cut) for c in plan.partitions if c.removed]
    if not targets:
        return 0
    admin = clients.admin(settings)  # held: the futures only complete while the client lives
    futures = admin.delete_records(targets, request_timeout=timeout_s, operation_timeout=timeout_s)
    for target, future in futures.items():
        try:
            future.result(timeout=timeout_s * 2)
        except (KafkaException, TimeoutError) as exc:
            raise DlqError(
                f"cannot delete records of {plan.topic}[{target.partition}]: "
                f"{kafka_reason(settings, exc)}"
            ) from None
    return plan.removed
