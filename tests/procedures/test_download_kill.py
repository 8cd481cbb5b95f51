"""SIGKILL of the download stage while downloads are in flight across epochs, then a restart
with the bare command: every task ends in one place (cached, a retry tier or the DLQ), the
tasks the crash cut off come back from the step's recovery state, and no file is left in the
cache that no message names. On a real broker, against the simulator over HTTP."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

from claimx_flow.config import Settings
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.models import DownloadTask
from claimx_flow.startup.recovery import recovery_directory
from claimx_flow.startup.recovery_state import read_recovery
from tests.isolation import isolated_settings
from tests.stages.download_runs import (
    Outcomes,
    cached,
    errors,
    expected_bytes,
    media_tasks,
    orphans,
    produce,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
IN_FLIGHT_STEP = "download-in-flight"


def bare_download(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``python -m bytewax.run dataflows.download``, recovery from the environment as a pod has
    it, ending by itself once its input is drained."""
    env = {
        **settings_env(settings),
        "CLAIMX_HEALTH_PORT": "0",
        "CLAIMX_STOP_AT_END": "true",
        "BYTEWAX_RECOVERY_DIRECTORY": str(recovery_directory(settings, "download")),
        "BYTEWAX_SNAPSHOT_INTERVAL": str(settings.claimx_snapshot_interval_seconds),
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": str(settings.claimx_backup_interval_seconds),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "dataflows.download"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def resumed_in_flight(settings: Settings) -> tuple[list[KafkaRecord], dict[tuple[str, int], int]]:
    """What a resume loads, by Bytewax's own rule: the download step's tasks in flight, and
    where the input resumes per (topic, partition)."""
    data = read_recovery(recovery_directory(settings, "download"))
    loaded = data.loaded(data.check_resumable())
    in_flight: list[KafkaRecord] = []
    positions: dict[tuple[str, int], int] = {}
    for (step_id, _), row in loaded.items():
        if step_id.endswith(IN_FLIGHT_STEP) and row.blob is not None:
            items: list[tuple[KafkaRecord, DownloadTask]] = pickle.loads(row.blob)
            in_flight += [record for record, _ in items]
        position = row.input_position()
        if position is not None:
            positions[(position.topic, position.partition)] = position.offset
    return in_flight, positions


def test_a_killed_stage_ends_every_task_once_after_a_bare_restart(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        cache_dir=tmp_path / "cache",
        download_concurrency=4,
        download_batch_size=8,
        download_timeout_seconds=30,
        claimx_snapshot_interval_seconds=1,
    )
    tasks = media_tasks(sim, 48, 7_400_000)
    gone = {task.media_id for task in tasks[5::12]}  # 404: the DLQ
    failing = {task.media_id for task in tasks[7::12]}  # 500: the first retry tier
    hostile = {media: "not_found" for media in gone} | {media: "server_error" for media in failing}
    # Every media body takes 0.8-1.6 s: each download spans an epoch or two.
    sim.set_faults(
        latency_ms=800, jitter_ms=800, apply_to=["media"], hostile={"media_bodies": hostile}
    )
    produce(settings, tasks)
    logs = tmp_path / "logs"
    pipeline = Pipeline(settings, settings_env(settings), logs)
    pipeline.start(["download"])
    try:
        wait_until(lambda: len(cached(settings)) >= 6, "the first downloads", timeout_s=120)
        wait_until(lambda: sim.stats.media_in_flight >= 2, "downloads in flight")
        pipeline.kill("download")
    finally:
        pipeline.stop()

    in_flight, positions = resumed_in_flight(settings)
    assert in_flight, "no download was in flight at an epoch's end"
    # The input resumes past them: only the step's recovery state brings them back.
    for record in in_flight:
        assert record.offset < positions[(record.topic, record.partition)]

    stage = bare_download(settings, logs / "download-restart.log")
    try:
        assert stage.wait(180) == 0
    finally:
        if stage.poll() is None:
            stage.kill()
    log = (logs / "download-restart.log").read_text(errors="replace")
    assert errors(log) == [], log[-3000:]

    outcomes = Outcomes.read(settings)
    for task in tasks:
        expected = "dlq" if task.media_id in gone else "retry" if task.media_id in failing else None
        assert outcomes.where(task.media_id) == [expected or "cached"], task.media_id
    for media_id in gone:
        assert outcomes.failed_results[media_id] >= 1
    resumed = {DownloadTask.from_json(record.value or b"").media_id for record in in_flight}
    assert resumed <= {task.media_id for task in tasks}
    for downloads in outcomes.cached.values():
        # A task that ran again after the crash names the same file: its tag is its record's.
        assert len({download.local_path for download in downloads}) == 1
        download = downloads[0]
        content = expected_bytes(sim, download.media_id)
        assert Path(download.local_path).read_bytes() == content
        assert download.sha256 == hashlib.sha256(content).hexdigest()
    assert orphans(settings, outcomes) == []
    print(f"{len(in_flight)} tasks resumed in flight; {outcomes.duplicates()} messages replayed")
