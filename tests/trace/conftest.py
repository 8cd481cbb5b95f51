"""One real pipeline for the trace tests: an event that lands, one in the enrichment DLQ and
one waiting in a retry tier, on real Kafka, the simulator over HTTP and local Delta tables."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.kafka.lag import stage_lag
from claimx_flow.kafka.topics import describe_topics
from claimx_flow.lab.inventory import table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.models import RawEvent
from tests.e2e.conftest import PipelineRun
from tests.isolation import isolated_settings
from tests.simulator_fixtures import SIMULATOR_SEED

LANDED_PROJECT, DLQ_PROJECT, RETRY_PROJECT = 5_000_001, 5_000_002, 5_000_003
RETRY_DELAY_S = 900
"""Long enough that the retried event is still waiting when the trace runs."""


@dataclass(frozen=True)
class Traced:
    run: PipelineRun
    env: dict[str, str]
    landed: str
    media: str
    dead: str
    retried: str
    settings: Settings


def _event(event_type: str, project: int, **extra: object) -> dict[str, object]:
    return {
        "eventType": event_type,
        "projectId": project,
        "ingestedAt": datetime.now(UTC).isoformat(),
        **extra,
    }


def _produce(settings: Settings, events: list[dict[str, object]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for event in events:
        producer.produce(
            settings.claimx_events_topic, key=str(event["projectId"]), value=json.dumps(event)
        )
    assert producer.flush(30) == 0


def warm_groups(settings: Settings, stages: Iterable[str] = STAGE_NAMES) -> None:
    """Ask each stage's group for its offsets, waiting out a coordinator still loading, so a
    stage starting on a fresh broker does not meet NOT_COORDINATOR first."""
    for stage in stages:
        stage_lag(settings, stage)


def _messages(settings: Settings, topic: str) -> int:
    (state,) = describe_topics(settings, [topic])
    return state.messages


@pytest.fixture(scope="module")
def traced(
    kafka_bootstrap: str, simulator: RunningSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traced]:
    tmp: Path = tmp_path_factory.mktemp("trace")
    simulator.reset()
    settings = isolated_settings(
        kafka_bootstrap,
        tmp / "data",
        sim=simulator,
        claimx_api_timeout_seconds=2,
        claimx_api_max_retries=0,
        retry_delays=[RETRY_DELAY_S, 2 * RETRY_DELAY_S, 3 * RETRY_DELAY_S, 4 * RETRY_DELAY_S],
    )
    env = {
        **settings_env(settings),
        "CLAIMX_STACK_DIR": str(tmp / "no-stack"),
    }
    run = PipelineRun(settings, Pipeline(settings, env, tmp / "logs"), tmp)
    media = str(sim_data.media_ids(SIMULATOR_SEED, LANDED_PROJECT)[0])
    landed = f"trace-landed-{uuid.uuid4().hex[:8]}"
    retried = f"trace-retry-{uuid.uuid4().hex[:8]}"
    dead_event = _event("PROJECT_CREATED", DLQ_PROJECT)  # no id: the trace derives it
    dead = RawEvent.from_source(dead_event).event_id
    try:
        simulator.set_faults(not_found_projects=[str(DLQ_PROJECT)])
        _produce(
            settings,
            [
                _event("PROJECT_FILE_ADDED", LANDED_PROJECT, mediaId=media, eventId=landed),
                dead_event,
            ],
        )
        warm_groups(settings)
        run.pipeline.start()
        run.wait_for(
            lambda: (
                table_rows(settings, "claimx_attachments") >= 1
                and _messages(settings, settings.claimx_enrichment_dlq_topic) >= 1
            ),
            120,
            "the file stored and the unknown project dead-lettered",
        )
        simulator.set_faults(error_rates={503: 1.0})
        _produce(settings, [_event("PROJECT_CREATED", RETRY_PROJECT, eventId=retried)])
        first_tier = settings.enrichment_retry_topics[0]
        run.wait_for(lambda: _messages(settings, first_tier) >= 1, 60, "a task in retry tier 1")
        yield Traced(run, env, landed, media, dead, retried, settings)
    finally:
        run.pipeline.stop()
        simulator.reset()
