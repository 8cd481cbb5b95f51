"""The retry dataflow on real Kafka: messages go back to their pending topic never before their
due time and soon after it, and a crash while it holds them loses none and releases none early."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, Producer

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.lab.pipeline import Pipeline
from claimx_flow.models import FailureInfo, MessageOrigin
from tests.probes import wait_ready

N = 60


def fill_tier(settings: Settings, tier: str, delay: timedelta) -> dict[str, datetime]:
    """N failed tasks in a tier, as the enrich stage writes them; returns due time by key."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    due: dict[str, datetime] = {}
    for i in range(N):
        failed_at = datetime.now(UTC)
        info = FailureInfo.from_reason(
            "HTTP 503",
            error_class="ClaimXApiError",
            origin=MessageOrigin(settings.claimx_enrichment_pending_topic, 0, i),
            stage="enrich",
            category=ErrorCategory.TRANSIENT,
            due_at=failed_at + delay,
            now=failed_at,
        )
        key = f"task-{i}"
        due[key] = failed_at + delay
        producer.produce(tier, key=key, value=f'{{"n": {i}}}'.encode(), headers=info.to_headers())
        time.sleep(0.01)
    assert producer.flush(30) == 0
    return due


def released(settings: Settings, expected: int, timeout_s: float) -> dict[str, list[datetime]]:
    """Arrival times (broker timestamps) of each key on the pending topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.claimx_enrichment_pending_topic])
    seen: dict[str, list[datetime]] = {}
    deadline = time.monotonic() + timeout_s
    while sum(map(len, seen.values())) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(100, 0.5):
            if msg.error() is None:
                at = datetime.fromtimestamp(msg.timestamp()[1] / 1000, tz=UTC)
                seen.setdefault(msg.key().decode(), []).append(at)
    for msg in consumer.consume(100, 2.0):  # and nothing more arrives
        if msg.error() is None:
            seen.setdefault(msg.key().decode(), []).append(datetime.now(UTC))
    consumer.close()
    return seen


def assert_on_time(
    due: dict[str, datetime], arrivals: dict[str, list[datetime]], ready_at: datetime
) -> None:
    """Never before due, and within 5 s of due or of the stage answering ready, the later:
    its start (imports, checks, recovery) is load, not lateness."""
    assert set(arrivals) == set(due)
    lateness = []
    for key, times in arrivals.items():
        assert len(times) == 1, f"{key} released {len(times)} times"
        early = (due[key] - times[0]).total_seconds()
        assert early <= 0.01, f"{key} released {early:.3f}s before it was due"
        lateness.append((times[0] - max(due[key], ready_at)).total_seconds())
    assert max(lateness) < 5.0, f"released up to {max(lateness):.1f}s late"


def test_messages_are_released_no_earlier_than_due(
    retry_settings: Settings, retry_stage: Pipeline
) -> None:
    tier = retry_settings.enrichment_retry_topics[0]
    retry_stage.start(["retry"])
    ready_at = wait_ready(retry_stage.health_ports["retry"][0])
    due = fill_tier(retry_settings, tier, timedelta(seconds=3))
    assert_on_time(due, released(retry_settings, N, timeout_s=60), ready_at)


def test_a_killed_retry_stage_loses_nothing_and_releases_nothing_early(
    retry_settings: Settings, retry_stage: Pipeline
) -> None:
    tier = retry_settings.enrichment_retry_topics[1]
    retry_stage.start(["retry"])
    wait_ready(retry_stage.health_ports["retry"][0])
    due = fill_tier(retry_settings, tier, timedelta(seconds=6))
    time.sleep(2)  # holding the heads, nothing due yet
    retry_stage.kill("retry")
    retry_stage.restart("retry")
    ready_at = wait_ready(retry_stage.health_ports["retry"][0])
    assert_on_time(due, released(retry_settings, N, timeout_s=60), ready_at)
