"""Topic bootstrap against the real broker: every topic, runbook retention (a retry tier's
follows its delay), idempotent, raising retention that is too short and never lowering any."""

from __future__ import annotations

import json
import uuid

import pytest
import typer
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from typer.testing import CliRunner

from claimx_flow.cli import topics_cmd
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import (
    RETENTION_MS,
    admin_client,
    await_leaders,
    describe_topics,
    ensure_topics,
    pipeline_topics,
    tier_retention_ms,
)
from claimx_flow.lab.pipeline import settings_env

DAY_MS = 86_400_000


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
        assert state.retention_ms == spec.retention_ms
    assert RETENTION_MS == {"main": 604_800_000, "dlq": 2_592_000_000}
    tiers = {s.name: s.retention_ms for s in specs if s.role == "retry"}
    assert tiers[isolated_settings.enrichment_retry_topics[0]] == (2 * 300 + 86_400) * 1000
    assert tiers[isolated_settings.download_retry_topics[-1]] == (2 * 2400 + 86_400) * 1000


def test_tier_retention_is_twice_the_delay_plus_the_allowance() -> None:
    settings = Settings(
        retry_delays=[90, 7200], max_retries=2, claimx_retry_retention_allowance_seconds=600
    )
    retention = {s.name: s.retention_ms for s in pipeline_topics(settings) if s.role == "retry"}
    assert retention == {
        "claimx.enrichment.pending.retry.90s": 780_000,
        "claimx.enrichment.pending.retry.120m": 15_000_000,
        "claimx.downloads.pending.retry.90s": 780_000,
        "claimx.downloads.pending.retry.7200s": 15_000_000,
    }
    assert tier_retention_ms(Settings(), 300) == 87_000_000  # the default allowance: a day


def test_create_raises_short_retention_and_never_lowers_a_longer_one(
    isolated_settings: Settings,
) -> None:
    """An operator's hand-made tier with the old hour is raised; a tier kept forever and a
    main topic kept 60 days stay as they are."""
    short_tier = isolated_settings.enrichment_retry_topics[3]
    forever_tier = isolated_settings.download_retry_topics[0]
    long_main = isolated_settings.claimx_events_topic
    hand_made = {short_tier: 3_600_000, forever_tier: -1, long_main: 60 * DAY_MS}
    admin = admin_client(isolated_settings)
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=3, replication_factor=1, config={"retention.ms": str(ms)})
            for name, ms in hand_made.items()
        ]
    )
    for future in futures.values():
        future.result(timeout=30)
    await_leaders(admin, list(hand_made))

    specs = pipeline_topics(isolated_settings)
    outcome = ensure_topics(admin, specs)
    assert outcome[short_tier] == "raised"
    assert outcome[forever_tier] == outcome[long_main] == "exists"
    assert {name for name, what in outcome.items() if what == "created"} == {
        s.name for s in specs
    } - set(hand_made)

    states = {s.name: s.retention_ms for s in describe_topics(isolated_settings, hand_made)}
    assert states == {
        short_tier: (2 * 2400 + 86_400) * 1000,
        forever_tier: -1,
        long_main: 60 * DAY_MS,
    }
    assert ensure_topics(admin, specs)[short_tier] == "exists"  # raised once, then left alone


def test_the_command_says_which_retention_it_raised(isolated_settings: Settings) -> None:
    tier = isolated_settings.enrichment_retry_topics[0]
    admin = admin_client(isolated_settings)
    admin.create_topics(
        [NewTopic(tier, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"})]
    )[tier].result(timeout=30)
    await_leaders(admin, [tier])
    app = typer.Typer()
    app.add_typer(topics_cmd.app, name="topics")
    env = {**settings_env(isolated_settings), "COLUMNS": "200"}
    ran = CliRunner().invoke(app, ["topics", "create"], env=env)
    assert ran.exit_code == 0, ran.output
    assert f"retention of {tier} raised to 1d10m" in ran.output
    assert "(1 with retention raised)" in ran.output
    listed = CliRunner().invoke(app, ["topics", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "1d10m" in listed.output and "30d" in listed.output


def test_list_counts_messages(isolated_settings: Settings) -> None:
    specs = pipeline_topics(isolated_settings)
    ensure_topics(admin_client(isolated_settings), specs)
    producer = Producer({"bootstrap.servers": isolated_settings.kafka_bootstrap_servers})
    for i in range(25):
        producer.produce(isolated_settings.claimx_events_dlq_topic, key=str(i), value=b"{}")
    assert producer.flush(30) == 0
    (state,) = describe_topics(isolated_settings, [isolated_settings.claimx_events_dlq_topic])
    assert state.messages == 25
    assert state.replicas == 1  # the one broker here


def test_list_shows_each_topics_replicas_against_the_setting(isolated_settings: Settings) -> None:
    ensure_topics(admin_client(isolated_settings), pipeline_topics(isolated_settings))
    app = typer.Typer()
    app.add_typer(topics_cmd.app, name="topics")
    env = {**settings_env(isolated_settings), "CLAIMX_TOPIC_REPLICATION_FACTOR": "3"}
    listed = CliRunner().invoke(app, ["topics", "list", "-o", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert {t["replicas"] for t in json.loads(listed.stdout)["topics"]} == {1}
    table = CliRunner().invoke(app, ["topics", "list"], env={**env, "COLUMNS": "200"})
    assert "replicas" in table.output


def test_missing_topic_is_reported_not_raised(isolated_settings: Settings) -> None:
    (state,) = describe_topics(isolated_settings, ["no.such.topic." + uuid.uuid4().hex])
    assert state.partitions == 0
