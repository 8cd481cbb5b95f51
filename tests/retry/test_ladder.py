"""The whole ladder on real Kafka with the simulator failing: a task climbs tier 1 → 2 → 3 → 4
and lands in the DLQ while failures persist, and succeeds once they stop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from claimx_flow.kafka.topics import describe_topics
from claimx_flow.lab.inventory import table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.models import EnrichmentTask, FailureInfo
from tests.e2e.conftest import PipelineRun
from tests.isolation import isolated_settings

TASKS = 3


@pytest.fixture
def ladder_run(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> Iterator[PipelineRun]:
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        claimx_api_timeout_seconds=2,
        claimx_api_max_retries=0,
        claimx_api_breaker_open_seconds=0.5,
        claimx_topic_partitions=1,
        retry_delays=[1, 2, 3, 4],
    )
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    try:
        yield PipelineRun(settings, pipeline, tmp_path)
    finally:
        pipeline.stop()


def feed_tasks(run: PipelineRun) -> None:
    producer = Producer({"bootstrap.servers": run.settings.kafka_bootstrap_servers})
    for i in range(TASKS):
        task = EnrichmentTask(
            event_id=f"ladder-{i}",
            event_type="PROJECT_CREATED",
            project_id=str(600 + i),
            ingested_at=datetime(2026, 11, 27, tzinfo=UTC),
        )
        producer.produce(
            run.settings.claimx_enrichment_pending_topic, key=task.kafka_key, value=task.to_json()
        )
    assert producer.flush(30) == 0


def messages_in(run: PipelineRun, topic: str) -> int:
    (state,) = describe_topics(run.settings, [topic])
    return state.messages


def test_persistent_failures_climb_every_tier_then_reach_the_dlq(
    ladder_run: PipelineRun, sim: RunningSimulator
) -> None:
    run = ladder_run
    sim.set_faults(down=True)
    feed_tasks(run)
    run.pipeline.start(["enrich", "retry"])
    dlq = run.settings.claimx_enrichment_dlq_topic
    run.wait_for(lambda: messages_in(run, dlq) >= TASKS, 90, "tasks in the DLQ")
    time.sleep(2)
    for tier in run.settings.enrichment_retry_topics:
        assert messages_in(run, tier) == TASKS, tier  # each task passed each tier once
    dead = run.topic_messages(dlq)
    assert len(dead) == TASKS
    for message in dead:
        info = FailureInfo.from_headers(message.headers())
        assert info.attempt == 5 and info.error_category == "transient"
        assert info.original_topic == run.settings.claimx_enrichment_pending_topic
        span = (info.last_failed_at - info.first_failed_at).total_seconds()
        assert span >= sum(run.settings.retry_delays)  # every delay was really waited out
    assert table_rows(run.settings, "claimx_projects") == 0


def test_a_transient_outage_ends_in_success(ladder_run: PipelineRun, sim: RunningSimulator) -> None:
    run = ladder_run
    sim.set_faults(down=True)
    feed_tasks(run)
    run.pipeline.start(["enrich", "retry"])
    first_tier = run.settings.enrichment_retry_topics[0]
    run.wait_for(lambda: messages_in(run, first_tier) >= TASKS, 60, "tasks in tier 1")
    sim.set_faults(down=False)
    run.wait_for(
        lambda: table_rows(run.settings, "claimx_projects") == TASKS, 60, "projects enriched"
    )
    assert messages_in(run, run.settings.claimx_enrichment_dlq_topic) == 0
