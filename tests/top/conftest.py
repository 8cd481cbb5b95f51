"""One real pipeline for the ``claimx top`` tests (package scope): every stage but results is
running, so the results group has lag; one event waits in a retry tier, one is in the
enrichment DLQ; the results stage's endpoint is a port nothing listens on."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import describe_topics
from claimx_flow.lab.inventory import table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import free_port
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from tests.e2e.conftest import PipelineRun
from tests.isolation import isolated_settings
from tests.simulator_fixtures import SIMULATOR_SEED
from tests.trace.conftest import warm_groups

RUNNING = ("ingest", "enrich", "download", "upload", "retry")
FIRST_PROJECT = 5_000_100
DEAD_PROJECT, RETRY_PROJECT = 5_000_190, 5_000_191
CLAIMX = str(Path(sys.executable).with_name("claimx"))
TERMINAL = frozenset({"COLUMNS", "LINES", "TERM", "TMUX", "TMUX_PANE"})
"""What the terminal itself says; not copied from the test's environment."""


@dataclass(frozen=True)
class Watched:
    run: PipelineRun
    settings: Settings
    env: dict[str, str]
    endpoints: dict[str, str]
    """Stage → host:port of its one process (results: nothing listens there)."""

    @property
    def flags(self) -> list[str]:
        return [flag for s, a in self.endpoints.items() for flag in ("--endpoint", f"{s}={a}")]

    def env_script(self, path: Path) -> Path:
        """A shell file that gives a command these settings (for a tmux session)."""
        kept = {k: v for k, v in self.env.items() if k.isidentifier() and k not in TERMINAL}
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in kept.items()))
        return path


def event(event_type: str, project: int, **extra: object) -> dict[str, object]:
    return {
        "eventType": event_type,
        "projectId": project,
        "ingestedAt": datetime.now(UTC).isoformat(),
        **extra,
    }


def produce(settings: Settings, events: list[dict[str, object]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for item in events:
        producer.produce(
            settings.claimx_events_topic, key=str(item["projectId"]), value=json.dumps(item)
        )
    assert producer.flush(30) == 0


def messages_in(settings: Settings, topic: str) -> int:
    (state,) = describe_topics(settings, [topic])
    return state.messages


@pytest.fixture(scope="package")
def watched(
    kafka_bootstrap: str, simulator: RunningSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Watched]:
    tmp = tmp_path_factory.mktemp("top")
    simulator.reset()
    settings = isolated_settings(
        kafka_bootstrap,
        tmp / "data",
        sim=simulator,
        claimx_api_timeout_seconds=2,
        claimx_api_max_retries=0,
        retry_delays=[900, 1800, 2700, 3600],
    )
    env = {**settings_env(settings), "CLAIMX_STACK_DIR": str(tmp / "no-stack")}
    run = PipelineRun(settings, Pipeline(settings, env, tmp / "logs"), tmp)
    files = [
        event("PROJECT_FILE_ADDED", project, mediaId=str(media))
        for project in range(FIRST_PROJECT, FIRST_PROJECT + 4)
        for media in sim_data.media_ids(SIMULATOR_SEED, project)[:3]
    ]
    try:
        simulator.set_faults(not_found_projects=[str(DEAD_PROJECT)])
        produce(settings, [*files, event("PROJECT_CREATED", DEAD_PROJECT)])
        warm_groups(settings, RUNNING)
        run.pipeline.start(RUNNING)
        run.wait_for(
            lambda: (
                table_rows(settings, "claimx_attachments") >= len(files)
                and messages_in(settings, settings.claimx_enrichment_dlq_topic) >= 1
            ),
            120,
            "files stored and the unknown project dead-lettered",
        )
        simulator.set_faults(error_rates={503: 1.0})
        produce(settings, [event("PROJECT_CREATED", RETRY_PROJECT)])
        tier = settings.enrichment_retry_topics[0]
        run.wait_for(lambda: messages_in(settings, tier) >= 1, 60, "a task in retry tier 1")
        simulator.set_faults(error_rates={})
        endpoints = {s: f"127.0.0.1:{run.pipeline.health_ports[s][0]}" for s in RUNNING}
        endpoints["results"] = f"127.0.0.1:{free_port()}"
        yield Watched(run, settings, env, endpoints)
    finally:
        run.pipeline.stop()
        simulator.reset()
