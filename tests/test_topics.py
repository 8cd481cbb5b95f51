"""Topic bootstrap against the real broker: every topic, runbook retention, idempotent."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import (
    RETENTION_MS,
    admin_client,
    describe_topics,
    ensure_topics,
    pipeline_topics,
)


@pytest.fixture
def isolated_settings(kafka_bootstrap: str) -> Settings:
    """Pipeline topic names under a unique prefix, so runs never see each other's topics."""
    p = f"t{uuid.uuid4().hex[:8]}"
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        claimx_events_topic=f"{p}.events.raw",
        claimx_events_dlq_topic=f"{p}.events.dlq",
        claimx_enrichment_pending_topic=f"{p}.enrichment.pending",
        claimx_enrichment_dlq_topic=f"{p}.enrichment.dlq",
        claimx_downloads_pending_topic=f"{p}.downloads.pending",
        claimx_downloads_cached_topic=f"{p}.downloads.cached",
        claimx_downloads_results_topic=f"{p}.downloads.results",
        claimx_downloads_dlq_topic=f"{p}.downloads.dlq",
        claimx_topic_partitions=3,
    )


def test_pipeline_topics_are_the_domain_list() -> None:
    names = [t.name for t in pipeline_topics(Settings())]
    assert names == [
        "claimx.events.raw",
        "claimx.enrichment.pending",
        "claimx.enrichment.pending.retry.5m",
        "claimx.enrichment.pending.retry.10m",
        "claimx.enrichment.pending.retry.20m",
        "claimx.enrichment.pending.retry.40m",
        "claimx.downloads.pending",
        "claimx.downloads.pending.retry.300s",
        "claimx.downloads.pending.retry.600s",
        "claimx.downloads.pending.retry.1200s",
        "claimx.downloads.pending.retry.2400s",
        "claimx.downloads.cached",
        "claimx.downloads.results",
        "claimx.events.dlq",
        "claimx.enrichment.dlq",
        "claimx.downloads.dlq",
    ]


def test_create_is_idempotent_and_sets_retention(isolated_settings: Settings) -> None:
    specs = pipeline_topics(isolated_settings)
    admin = admin_client(isolated_settings)
    first = ensure_topics(admin, specs)
    assert set(first.values()) == {"created"}
    second = ensure_topics(admin, specs)
    assert set(second.values()) == {"exists"}

    states = {s.name: s for s in describe_topics(isolated_settings, [s.name for s in specs])}
    for spec in specs:
        state = states[spec.name]
        assert state.partitions == 3
        assert state.messages == 0
        assert state.retention_ms == RETENTION_MS[spec.role]
    assert RETENTION_MS == {"main": 604_800_000, "retry": 3_600_000, "dlq": 2_592_000_000}


def test_list_counts_messages(isolated_settings: Settings) -> None:
    specs = pipeline_topics(isolated_settings)
    ensure_topics(admin_client(isolated_settings), specs)
    producer = Producer({"bootstrap.servers": isolated_settings.kafka_bootstrap_servers})
    for i in range(25):
        producer.produce(isolated_settings.claimx_events_dlq_topic, key=str(i), value=b"{}")
    assert producer.flush(30) == 0
    (state,) = describe_topics(isolated_settings, [isolated_settings.claimx_events_dlq_topic])
    assert state.messages == 25


def test_missing_topic_is_reported_not_raised(isolated_settings: Settings) -> None:
    (state,) = describe_topics(isolated_settings, ["no.such.topic." + uuid.uuid4().hex])
    assert state.partitions == 0
