"""Offset reset on Bytewax: `claimx recovery show` prints where a stage resumes, and a reset to
a datetime replays exactly the events after it, idempotently; a running stage is refused; after
a SIGKILL mid-stream, the restart resumes exactly where the reset said."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import describe_topics
from claimx_flow.lab.inventory import table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.startup.recovery_state import (
    RecoveryStateError,
    group_positions,
    input_positions,
    read_recovery,
    reset_positions,
)
from tests.isolation import isolated_settings


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)


# A stage run to its end here published its positions moments before each reset, as a stage
# still running would: the resets say it is stopped (``assume_stopped``, ``--assume-stopped``).


def run_ingest_to_the_end(settings: Settings, logs: Path) -> None:
    settings = settings.model_copy(update={"claimx_stop_at_end": True})
    pipeline = Pipeline(settings, settings_env(settings), logs)
    pipeline.start(["ingest"])
    (process,) = pipeline.processes["ingest"]
    assert process.wait(120) == 0


def messages(settings: Settings, topic: str) -> int:
    (state,) = describe_topics(settings, [topic])
    return state.messages


def produce_around_a_cut(settings: Settings) -> datetime:
    """150 events on the raw topic, 100 before the time returned and 50 after it."""
    lines = list(event_lines(EventPlan(150, 10)))
    produce_lines(lines[:100], settings.claimx_events_topic, settings)
    time.sleep(1.5)
    cut = datetime.now(UTC)
    time.sleep(1.5)
    produce_lines(lines[100:], settings.claimx_events_topic, settings)
    return cut


def test_reset_to_a_datetime_replays_exactly_what_came_after(
    settings: Settings, tmp_path: Path
) -> None:
    cut = produce_around_a_cut(settings)

    run_ingest_to_the_end(settings, tmp_path / "logs")
    assert messages(settings, settings.claimx_enrichment_pending_topic) == 150
    shown = input_positions(settings, "ingest")
    assert sum(p.offset for p in shown) == 150
    assert {p.topic for p in shown} == {settings.claimx_events_topic}

    moved = reset_positions(settings, "ingest", cut, assume_stopped=True)
    assert sum(p.offset for p in moved) == 100  # the 50 later events will be read again
    assert sum(p.offset for p in input_positions(settings, "ingest")) == 100

    run_ingest_to_the_end(settings, tmp_path / "logs-again")
    assert messages(settings, settings.claimx_enrichment_pending_topic) == 200
    assert table_rows(settings, "claimx_events") == 150  # replayed events add no rows

    reset_positions(settings, "ingest", "earliest", assume_stopped=True)
    assert sum(p.offset for p in input_positions(settings, "ingest")) == 0
    reset_positions(settings, "ingest", "latest", assume_stopped=True)
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
            reset_positions(settings, "ingest", "earliest", assume_stopped=True)
    finally:
        pipeline.stop()


def test_after_a_sigkill_mid_stream_the_restart_resumes_where_the_reset_said(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A backup interval keeps Bytewax's garbage collection (``commits``) epochs behind its
    resume frontier, so a reset that chose its snapshot by ``commits`` would rewrite a row
    Bytewax never loads; the restart's output proves which rows it loaded."""
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", claimx_backup_interval_seconds=3
    )
    events, pending = settings.claimx_events_topic, settings.claimx_enrichment_pending_topic
    lines = list(event_lines(EventPlan(4000, 40)))
    produce_lines(lines[:300], events, settings)
    time.sleep(1.5)
    cut = datetime.now(UTC)
    time.sleep(1.5)
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:  # keeps the stage mid-stream until it is killed
        for start in range(300, len(lines), 40):
            if not feeding.is_set():
                return
            produce_lines(lines[start : start + 40], events, settings)
            time.sleep(0.1)

    feeder = threading.Thread(target=feed)
    feeder.start()
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["ingest"])
    try:
        deadline = time.monotonic() + 90
        directory = settings.recovery_dir("ingest")
        while time.monotonic() < deadline:
            if messages(settings, pending) >= 800 and read_recovery(directory).resume_epoch() >= 8:
                break
            time.sleep(0.3)
        pipeline.kill("ingest")  # SIGKILL: no drain, whatever was in flight stays unconfirmed
    finally:
        feeding.clear()
        feeder.join(60)
        pipeline.stop()

    state = read_recovery(settings.recovery_dir("ingest"))
    epoch = state.check_resumable()
    collected = min(state.commits.values())
    assert collected < epoch - 1, (collected, epoch)  # the two rules pick different rows here
    by_commits = {r.epoch for r in state.snapshots if r.epoch <= collected}
    assert by_commits and max(by_commits) < epoch - 1

    total = messages(settings, events)
    moved = reset_positions(settings, "ingest", cut, assume_stopped=True)
    assert sum(p.offset for p in moved) == 300  # the events produced before the cut
    assert [(p.topic, p.partition, p.offset) for p in input_positions(settings, "ingest")] == [
        (p.topic, p.partition, p.offset) for p in moved
    ]
    before = messages(settings, pending)
    run_ingest_to_the_end(settings, tmp_path / "logs-again")
    assert messages(settings, pending) - before == total - 300  # one task per event re-read


def test_recovery_files_that_refuse_the_change_leave_the_group_and_name_the_backup(
    settings: Settings, tmp_path: Path
) -> None:
    """A recovery file that cannot be written (locked, read-only, damaged; here a trigger in
    the real file refuses every update, as a full or read-only volume would) is one error
    naming the backup, not a traceback, and the consumer group is not moved without it."""
    import sqlite3
    from contextlib import closing

    from typer.testing import CliRunner

    from claimx_flow.cli import app
    from claimx_flow.kafka.clients import consumer_config
    from claimx_flow.kafka.positions import committed_positions
    from claimx_flow.startup.recovery_state import partition_files, recovery_directory

    lines = list(event_lines(EventPlan(20, 4)))
    produce_lines(lines, settings.claimx_events_topic, settings)
    run_ingest_to_the_end(settings, tmp_path / "logs")
    before = input_positions(settings, "ingest")
    assert 0 < sum(p.offset for p in before) <= len(lines)
    for path in partition_files(recovery_directory(settings, "ingest")):
        with closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON snaps "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )

    def group() -> dict[int, int]:
        from confluent_kafka import Consumer

        consumer = Consumer(consumer_config(settings, group_id=settings.consumer_group("ingester")))
        try:
            found = committed_positions(consumer, settings.claimx_events_topic, range(2))
            return {p: position.offset for p, position in found.items()}
        finally:
            consumer.close()

    published = group()
    done = CliRunner().invoke(
        app,
        ["recovery", "reset", "ingest", "--to-earliest", "--yes", "--assume-stopped"],
        env=settings_env(settings),
    )
    assert isinstance(done.exception, RecoveryStateError), done.output
    message = str(done.exception)
    assert "could not all be changed" in message and "disk I/O error" in message
    (backup,) = recovery_directory(settings, "ingest").glob("backup-*")
    assert str(backup) in message
    assert group() == published  # not moved without the files
    assert input_positions(settings, "ingest") == before


def test_a_reset_away_from_the_pods_volumes_moves_the_group_and_says_the_claims_must_go(
    settings: Settings, tmp_path: Path
) -> None:
    """Kubernetes keeps a stage's recovery files on its pods' volumes; a reset run elsewhere
    finds none. It moves the group only and its plan says so (the group's offsets as "now"),
    as it does with --group-only beside files of its own, which it leaves be; with the claims
    deleted, the stage starts from where the reset put the group (docs/operations.md,
    "Offsets in Kubernetes")."""
    cut = produce_around_a_cut(settings)
    run_ingest_to_the_end(settings, tmp_path / "logs")  # its files: the pods' volumes
    pending = settings.claimx_enrichment_pending_topic
    assert messages(settings, pending) == 150

    raw = settings.claimx_events_topic
    group = group_positions(settings, "ingest", [(raw, 0), (raw, 1)])
    elsewhere = {
        **settings_env(settings),
        "BYTEWAX_RECOVERY_DIRECTORY": str(tmp_path / "operator-machine"),
        "COLUMNS": "400",
    }
    args = ["recovery", "reset", "ingest", "--to-datetime", cut.strftime("%Y-%m-%dT%H:%M:%S")]
    done = CliRunner().invoke(app, [*args, "--dry-run", "--assume-stopped"], env=elsewhere)
    assert done.exit_code == 0, done.output
    plan = done.output
    assert "moves the consumer group only" in " ".join(plan.split())
    assert "delete those claims" in " ".join(plan.split())
    rows = [row.replace("│", " ").split() for row in plan.splitlines()]
    now = {(raw, int(cells[1])): cells[2] for cells in rows if cells[:1] == [raw]}
    expected = {(raw, p): f"{group[raw, p]:,}" if (raw, p) in group else "-" for p in (0, 1)}
    assert now == expected, plan  # "now": where the group has the stage

    # On a machine that has recovery files of its own, --group-only leaves them be.
    here = {**settings_env(settings), "COLUMNS": "400"}
    kept = input_positions(settings, "ingest")
    done = CliRunner().invoke(app, [*args, "--group-only", "--yes", "--assume-stopped"], env=here)
    assert done.exit_code == 0, done.output
    assert "moves the consumer group only" in " ".join(done.output.split())
    assert input_positions(settings, "ingest") == kept
    assert sum(group_positions(settings, "ingest", [(raw, 0), (raw, 1)]).values()) == 100

    shutil.rmtree(settings.recovery_dir("ingest"))  # the claims deleted
    run_ingest_to_the_end(settings, tmp_path / "logs-from-the-group")
    assert messages(settings, pending) == 200  # the 50 after the cut, read again
    assert table_rows(settings, "claimx_events") == 150
