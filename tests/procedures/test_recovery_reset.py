"""Offset reset on Bytewax: `claimx recovery show` prints where a stage resumes, and a reset to
a datetime replays exactly the events after it, idempotently; a running stage is refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import describe_topics
from claimx_flow.lab.inventory import table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.startup.recovery_state import RecoveryStateError, input_positions, reset_positions
from tests.isolation import isolated_settings


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)


def run_ingest_to_the_end(settings: Settings, logs: Path) -> None:
    pipeline = Pipeline(settings, settings_env(settings), logs)
    pipeline.start(["ingest"])
    (process,) = pipeline.processes["ingest"]
    assert process.wait(120) == 0


def messages(settings: Settings, topic: str) -> int:
    (state,) = describe_topics(settings, [topic])
    return state.messages


def test_reset_to_a_datetime_replays_exactly_what_came_after(
    settings: Settings, tmp_path: Path
) -> None:
    lines = list(event_lines(EventPlan(150, 10)))
    produce_lines(lines[:100], settings.claimx_events_topic, settings)
    time.sleep(1.5)
    cut = datetime.now(UTC)
    time.sleep(1.5)
    produce_lines(lines[100:], settings.claimx_events_topic, settings)

    run_ingest_to_the_end(settings, tmp_path / "logs")
    assert messages(settings, settings.claimx_enrichment_pending_topic) == 150
    shown = input_positions(settings, "ingest")
    assert sum(p.offset for p in shown) == 150
    assert {p.topic for p in shown} == {settings.claimx_events_topic}

    moved = reset_positions(settings, "ingest", cut)
    assert sum(p.offset for p in moved) == 100  # the 50 later events will be read again
    assert sum(p.offset for p in input_positions(settings, "ingest")) == 100

    run_ingest_to_the_end(settings, tmp_path / "logs-again")
    assert messages(settings, settings.claimx_enrichment_pending_topic) == 200
    assert table_rows(settings, "claimx_events") == 150  # replayed events add no rows

    reset_positions(settings, "ingest", "earliest")
    assert sum(p.offset for p in input_positions(settings, "ingest")) == 0
    reset_positions(settings, "ingest", "latest")
    assert sum(p.offset for p in input_positions(settings, "ingest")) == 150


def test_a_running_stage_cannot_be_reset(settings: Settings, tmp_path: Path) -> None:
    produce_lines(list(event_lines(EventPlan(10, 2))), settings.claimx_events_topic, settings)
    tailing = settings.model_copy(update={"claimx_stop_at_end": False})
    pipeline = Pipeline(tailing, settings_env(tailing), tmp_path / "logs")
    pipeline.start(["ingest"])
    try:
        deadline = time.monotonic() + 60
        while table_rows(settings, "claimx_events") < 10 and time.monotonic() < deadline:
            time.sleep(0.5)
        with pytest.raises(RecoveryStateError, match="is running"):
            reset_positions(settings, "ingest", "earliest")
    finally:
        pipeline.stop()
