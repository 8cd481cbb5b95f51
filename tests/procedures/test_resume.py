"""A stage resumes where it left off with or without ``-r``: the design card's bare command
(``python -m bytewax.run dataflows.<stage>``, no recovery) and a rescale onto fresh recovery
directories both start from the consumer group's committed offsets, which follow only what is
done. Counted on the stage's output topic, on a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.kafka.lag import stage_lag
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.startup.recovery import reset_recovery
from tests.dlq.helpers import read_all
from tests.isolation import isolated_settings

REPO = Path(__file__).resolve().parents[2]
EPOCH_S = 1


def produce(settings: Settings, lines: list[tuple[str, str]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for key, line in lines:
        producer.produce(settings.claimx_events_topic, key=key, value=line.encode())
    assert producer.flush(30) == 0


def tasks(settings: Settings) -> int:
    return len(read_all(settings.kafka_bootstrap_servers, settings.claimx_enrichment_pending_topic))


def caught_up(settings: Settings) -> bool:
    """Whether ingest's consumer group has committed the end of every input partition."""
    return all(row.lag == 0 for row in stage_lag(settings, "ingest"))


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def workload(count: int, seed: int) -> list[tuple[str, str]]:
    return list(event_lines(EventPlan(count=count, projects=10, mix="mixed", seed=seed)))


def bare_ingest(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``python -m bytewax.run dataflows.ingest`` exactly, with short epochs from the
    environment (``BYTEWAX_SNAPSHOT_INTERVAL``, as a pod would set it)."""
    env = {
        **settings_env(settings),
        "CLAIMX_HEALTH_PORT": "0",
        "BYTEWAX_SNAPSHOT_INTERVAL": str(EPOCH_S),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.ingest"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_the_bare_command_resumes_instead_of_replaying(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    first, second = workload(200, 1), workload(150, 2)
    produce(settings, first)
    log = tmp_path / "ingest.log"
    stage = bare_ingest(settings, log)
    try:
        wait_until(lambda: tasks(settings) >= len(first), "the first workload's tasks")
        wait_until(lambda: caught_up(settings), "the group to commit what is done")
        stage.send_signal(signal.SIGTERM)
        assert stage.wait(60) == 0, log.read_text()[-3000:]

        produce(settings, second)
        stage = bare_ingest(settings, log)
        wait_until(lambda: tasks(settings) >= len(first) + len(second), "the second workload")
        wait_until(lambda: caught_up(settings), "the group to commit what is done")
        assert tasks(settings) == len(first) + len(second)  # nothing read twice
    finally:
        stage.send_signal(signal.SIGTERM)
        stage.wait(60)


def test_a_killed_bare_stage_rereads_at_most_its_last_epochs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    first = workload(300, 3)
    produce(settings, first)
    log = tmp_path / "ingest.log"
    stage = bare_ingest(settings, log)
    try:
        wait_until(lambda: tasks(settings) >= len(first), "the first workload's tasks")
        wait_until(lambda: caught_up(settings), "the group to commit what is done")
        stage.kill()
        stage.wait(30)
        stage = bare_ingest(settings, log)
        time.sleep(8 * EPOCH_S)
        assert tasks(settings) == len(first)  # committed before the kill: no replay at all
    finally:
        stage.send_signal(signal.SIGTERM)
        stage.wait(60)


@pytest.mark.parametrize("shape", [(1, 2, 1)])
def test_rescaling_onto_fresh_recovery_keeps_the_progress(
    kafka_bootstrap: str, tmp_path: Path, shape: tuple[int, ...]
) -> None:
    """Like a StatefulSet scaled with new recovery volumes: 1 → 2 → 1 processes, each start
    with an empty recovery directory, resumes from the group and re-reads nothing."""
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", claimx_snapshot_interval_seconds=EPOCH_S
    )
    produced = 0
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    try:
        for step, processes in enumerate(shape):
            lines = workload(120, 10 + step)
            produce(settings, lines)
            produced += len(lines)
            reset_recovery(settings, "ingest")  # a fresh volume
            pipeline.start(["ingest"], processes=processes)
            wait_until(lambda n=produced: tasks(settings) >= n, f"{produced} tasks")
            wait_until(lambda: caught_up(settings), "the group to commit what is done")
            pipeline.stop()
            assert not pipeline.dead()
        assert tasks(settings) == produced
    finally:
        pipeline.stop()
