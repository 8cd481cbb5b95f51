"""Orphan tiers: a tier topic the configuration no longer names (RETRY_DELAYS changed, a tier
renamed) is found by its name, and the retry stage drains it to the pending topic its name
says, each message no earlier than its due time, and once only across restarts."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from pydantic import ValidationError

from claimx_flow.config import MAX_RETRY_DELAY_S, Settings
from claimx_flow.kafka.topics import admin_client, await_leaders
from claimx_flow.routing.tiers import DUE_HEADER, Tier, orphan_tiers, parse_tier
from dataflows import retry
from tests.isolation import isolated_settings

PENDING = ("p.enrichment.pending", "p.downloads.pending")


@pytest.mark.parametrize(
    ("name", "delay"),
    [
        ("p.enrichment.pending.retry.5m", 300),
        ("p.enrichment.pending.retry.300s", 300),
        ("p.downloads.pending.retry.7s", 7),
        ("p.downloads.pending.retry.90m", 5400),
    ],
)
def test_a_tier_name_says_its_delay_and_pending_topic(name: str, delay: int) -> None:
    assert parse_tier(name, PENDING) == Tier(name, delay, name.split(".retry.")[0])


@pytest.mark.parametrize(
    "name",
    [
        "p.enrichment.pending",
        "p.enrichment.pending.retry.0s",
        "p.enrichment.pending.retry.5h",
        "p.enrichment.pending.retry.5m.old",
        "p.enrichment.pending.retry.m",
        "q.enrichment.pending.retry.5m",  # another pipeline's
        "p.enrichment.dlq.retry.5m",
    ],
)
def test_other_names_are_no_tier(name: str) -> None:
    assert parse_tier(name, PENDING) is None


def test_a_tier_name_past_any_date_releases_as_the_longest_delay() -> None:
    """Found stopping the retry stage on every start: a tier named with a delay no date can be
    added to (``….retry.99999999999m``, made by hand) raised ``OverflowError`` at its first
    message. Settings refuse such a delay; a name gets the longest one allowed."""
    name = "p.enrichment.pending.retry.99999999999m"
    assert parse_tier(name, PENDING) == Tier(name, MAX_RETRY_DELAY_S, "p.enrichment.pending")
    with pytest.raises(ValidationError, match="at most"):
        Settings(retry_delays=[300, 99_999_999_999 * 60])


def create(settings: Settings, *topics: str, partitions: int = 2) -> None:
    admin = admin_client(settings)
    for future in admin.create_topics([NewTopic(t, partitions, 1) for t in topics]).values():
        future.result(timeout=30)
    await_leaders(admin, list(topics))


def produce(
    settings: Settings, topic: str, value: bytes, written_at: datetime, due: datetime | None = None
) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    headers = [(DUE_HEADER, due.isoformat().encode())] if due else []
    stamp = int(written_at.timestamp() * 1000)
    producer.produce(topic, key=value, value=value, headers=headers, timestamp=stamp)
    assert producer.flush(30) == 0


@dataclass(frozen=True)
class Arrived:
    value: bytes
    headers: dict[str, bytes]
    at: datetime


def arrived(settings: Settings, topic: str) -> list[Arrived]:
    """Everything in ``topic`` now, with the time the broker stamped on each."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
        }
    )
    parts = settings.claimx_topic_partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    out: list[Arrived] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 30
    try:
        while len(at_end) < parts:
            assert time.monotonic() < deadline, f"{topic}: no end in sight"
            for msg in consumer.consume(100, 0.1):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF
                    at_end.add(msg.partition())
                    continue
                stamp = datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
                out.append(Arrived(msg.value(), dict(msg.headers() or []), stamp))
    finally:
        consumer.close()
    return out


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)


def test_only_unnamed_tiers_with_messages_are_orphans(settings: Settings) -> None:
    held = f"{settings.claimx_downloads_pending_topic}.retry.90s"
    empty = f"{settings.claimx_enrichment_pending_topic}.retry.7m"
    create(settings, held, empty)
    now = datetime.now(UTC)
    produce(settings, held, b"m", now)
    produce(settings, settings.enrichment_retry_topics[0], b"configured", now)
    (orphan,) = orphan_tiers(settings)
    assert orphan.tier == Tier(held, 90, settings.claimx_downloads_pending_topic)
    assert orphan.messages == 1


def test_the_retry_stage_drains_orphans_no_earlier_than_due(settings: Settings) -> None:
    """Two tiers dropped from the ladders: a due message and one due in a few seconds by the
    tier's delay (90 s after it was written), whatever its header says."""
    enrichment = f"{settings.claimx_enrichment_pending_topic}.retry.7m"
    download = f"{settings.claimx_downloads_pending_topic}.retry.90s"
    create(settings, enrichment, download)
    now = datetime.now(UTC)
    produce(settings, enrichment, b"overdue", now - timedelta(seconds=421), due=now)
    written = now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(seconds=86)
    produce(settings, download, b"soon", written, due=now - timedelta(seconds=60))
    due = written + timedelta(seconds=90)

    started = time.monotonic()
    cluster_main(retry.build(settings), [], 0)
    assert time.monotonic() - started < 60

    (overdue,) = arrived(settings, settings.claimx_enrichment_pending_topic)
    assert overdue.value == b"overdue"
    assert overdue.headers[DUE_HEADER] == now.isoformat().encode()  # as it was
    (soon,) = arrived(settings, settings.claimx_downloads_pending_topic)
    assert soon.value == b"soon" and soon.at >= due


def test_the_retry_stage_drains_an_orphan_named_past_any_date(settings: Settings) -> None:
    """The same name on a real broker: its message, written two weeks ago, goes on to its
    pending topic, and the stage ends by itself."""
    orphan = f"{settings.claimx_enrichment_pending_topic}.retry.99999999999m"
    create(settings, orphan)
    produce(settings, orphan, b"old", datetime.now(UTC) - timedelta(days=14))
    cluster_main(retry.build(settings), [], 0)
    (released,) = arrived(settings, settings.claimx_enrichment_pending_topic)
    assert released.value == b"old"


def test_an_orphan_found_on_a_resume_is_drained_once(settings: Settings, tmp_path: Path) -> None:
    """Recovery takes a tier it has not seen before and keeps its offset from then on."""
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    def run() -> None:
        flow = retry.build(settings)
        cluster_main(flow, [], 0, epoch_interval=timedelta(seconds=1), recovery_config=config)

    config = RecoveryConfig(str(recovery))
    run()  # the configured tiers only
    orphan = f"{settings.claimx_enrichment_pending_topic}.retry.7m"
    create(settings, orphan)
    produce(settings, orphan, b"stranded", datetime.now(UTC) - timedelta(minutes=8))
    run()
    run()  # the orphan still holds its message; recovery knows it was released
    pending = arrived(settings, settings.claimx_enrichment_pending_topic)
    assert [m.value for m in pending] == [b"stranded"]
