"""`claimx recovery` on the retry stage, whose input snapshots one row per tier topic holding a
{partition: offset} dict (``operators.due_time``), not the Kafka input's int per partition:
show, the start check and reset read and rewrite those rows per partition, so a recreated tier
is replayed from where the reset said; a reset is refused while the stage's group says it may
be running (wherever it runs), and for an input snapshot of a shape it does not know."""

from __future__ import annotations

import json
import pickle
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.routing.tiers import enrichment_ladder
from claimx_flow.startup.recovery import TOPICS_MARKER, RecoveryMismatch
from claimx_flow.startup.recovery_state import (
    STOPPED_AFTER_S,
    check_recovery_identity,
    check_stopped,
    read_recovery,
)
from tests.isolation import isolated_settings
from tests.procedures.test_recovery_identity import messages, recreate

Claimx = Callable[..., tuple[int, str, str]]


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(
        kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True, retry_delays=[3, 6, 9, 12]
    )


@pytest.fixture
def claimx(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Claimx:
    return entry_point(settings, tmp_path, monkeypatch, capsys)


def entry_point(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Claimx:
    """``claimx <args>`` through its entry point, as an operator runs it (a known failure is
    one red line and exit 2), with ``settings``: its exit code, stdout and stderr."""
    import claimx_flow.cli as cli

    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLAIMX_STACK_DIR", str(tmp_path / "no-stack"))
    monkeypatch.setattr(cli, "_entry_point", False)  # main() sets it; keep it to this test

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["claimx", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exited:
            code = int(exited.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def produce_due(settings: Settings, topic: str, counts: dict[int, int], tag: str) -> None:
    """``counts`` messages per partition, written an hour ago: due at once. Keys of their own
    (``tag``), so a start's ledger never takes one for a message an earlier run released."""
    written = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for partition, count in counts.items():
        for i in range(count):
            key = f"{tag}-{partition}-{i}".encode()
            producer.produce(topic, key=key, value=key, partition=partition, timestamp=written)
    assert producer.flush(30) == 0


def run_retry(settings: Settings, logs: Path) -> None:
    pipeline = Pipeline(settings, settings_env(settings), logs)
    pipeline.start(["retry"])
    (process,) = pipeline.processes["retry"]
    code = process.wait(120)
    assert code == 0, "".join(p.read_text() for p in pipeline.logs("retry"))[-2000:]


def shown(claimx: Claimx) -> dict[str, dict[int, int]]:
    """What `claimx recovery show retry -o json` says each tier partition resumes from."""
    code, out, err = claimx("recovery", "show", "retry", "-o", "json")
    assert code == 0, err
    positions: dict[str, dict[int, int]] = {}
    for p in json.loads(out)["positions"]:
        positions.setdefault(p["topic"], {})[p["partition"]] = p["offset"]
    return positions


def group_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({**client_config(settings), "group.id": settings.consumer_group("retry")})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def one_line(err: str) -> str:
    """The one red line a failed command ends with (after its plan, if it showed one)."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert not any(line.startswith("error: ") for line in lines[:-1]), err
    return re.sub(r"\s+", " ", lines[-1])


def test_a_recreated_tier_is_shown_checked_and_replayed_from_where_the_reset_said(
    settings: Settings, tmp_path: Path, claimx: Claimx
) -> None:
    tiers = [tier.topic for tier in enrichment_ladder(settings).tiers]
    tier, pending = tiers[0], settings.claimx_enrichment_pending_topic
    produce_due(settings, tier, {0: 3, 1: 3}, "first")
    run_retry(settings, tmp_path / "logs-1")
    assert messages(settings, pending) == 6
    assert shown(claimx)[tier] == {0: 3, 1: 3}  # was: no tier at all

    recreate(settings, tier)
    produce_due(settings, tier, {0: 5, 1: 1}, "second")  # p0 past the old offset, p1 short of it
    with pytest.raises(RecoveryMismatch, match=f"topic {re.escape(tier)} is not the one"):
        check_recovery_identity(settings, "retry")
    # Without the topic id (a directory recorded before ids were), the offsets alone must tell.
    marker = settings.recovery_dir("retry") / TOPICS_MARKER
    ids = json.loads(marker.read_text())
    marker.write_text(json.dumps({k: v for k, v in ids.items() if k != tier}))
    with pytest.raises(
        RecoveryMismatch,
        match=f"a recovery snapshot of offset 3 for topic {re.escape(tier)} partition 1, but "
        "the partition ends at 1",
    ):
        check_recovery_identity(settings, "retry")

    # The stage stopped seconds ago: its group's positions are too fresh to tell it from a
    # stage running elsewhere (its consumers never join the group).
    reset = ["recovery", "reset", "retry", "--to-earliest", "--yes"]
    code, _, err = claimx(*reset)
    assert code == 2
    line = one_line(err)
    assert "retry seems to be running: its group" in line and "published at" in line
    assert "--assume-stopped" in line
    assert shown(claimx)[tier] == {0: 3, 1: 3}  # nothing moved
    later = time.time() + STOPPED_AFTER_S  # as quiet as a stopped stage's group gets
    partitions = [(t, p) for t in tiers for p in (0, 1)]
    check_stopped(settings, "retry", [], partitions, now=later)

    code, out, err = claimx(*reset, "--assume-stopped")
    assert code == 0, err
    assert tier in out
    assert shown(claimx)[tier] == {0: 0, 1: 0}  # was: still 3 and 3
    assert group_offsets(settings, tier) == {0: 0, 1: 0}
    check_recovery_identity(settings, "retry")  # the stage may start again

    run_retry(settings, tmp_path / "logs-2")
    assert messages(settings, pending) == 6 + 6  # every message of the new tier, none skipped
    assert shown(claimx)[tier] == {0: 5, 1: 1}


def test_an_input_snapshot_of_an_unknown_shape_is_refused_not_skipped(
    settings: Settings, tmp_path: Path, claimx: Claimx
) -> None:
    """A reset that cannot read where an input resumes would move only the consumer group and
    leave the stage resuming from the row: refused (one line, exit 2), nothing moved."""
    tier = enrichment_ladder(settings).tiers[0].topic
    produce_due(settings, tier, {0: 2, 1: 2}, "only")
    run_retry(settings, tmp_path / "logs")
    directory = settings.recovery_dir("retry")
    data = read_recovery(directory)
    (row,) = [r for r in data.loaded(data.resume_epoch()).values() if r.state_key == tier]
    with closing(sqlite3.connect(row.file)) as db, db:
        db.execute(
            "UPDATE snaps SET ser_change = ? "
            "WHERE step_id = ? AND state_key = ? AND snap_epoch = ?",
            (pickle.dumps((2, 2)), row.step_id, row.state_key, row.epoch),
        )
    published = group_offsets(settings, tier)

    reset = ["reset", "retry", "--to-earliest", "--yes", "--assume-stopped"]
    for command in (["show", "retry"], reset):
        code, _, err = claimx("recovery", *command)
        assert code == 2, (command, err)
        line = one_line(err)
        assert f"{row.step_id} for {tier}" in line and "a tuple ((2, 2))" in line
        assert "not a shape of input position known here" in line
    assert group_offsets(settings, tier) == published  # was: moved to 0, the file left at 2
    assert not list(directory.glob("backup-*"))  # refused before anything was written
