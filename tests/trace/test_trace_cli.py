"""``claimx trace`` without a pipeline: an unreachable broker is one red line and exit 2, a
wrong target is a usage error; the window and the limit are read as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.cli.trace_cmd import parse_since
from claimx_flow.trace.scan import Range, cap


def test_an_unreachable_broker_is_one_red_line_and_exit_2(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # discard port: nothing listens
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
        "CLAIMX_DATA_DIR": str(tmp_path / "data"),
    }
    claimx = Path(sys.executable).with_name("claimx")
    done = subprocess.run(
        [str(claimx), "trace", "evt-1", "--timeout", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach Kafka at 127.0.0.1:9")


@pytest.mark.parametrize("args", [[], ["evt-1", "--media-id", "5"], ["--project-id", " "]])
def test_exactly_one_target(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["trace", *args], env={"CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}
    )
    assert result.exit_code == 2
    assert "exactly one of EVENT_ID, --project-id or --media-id" in result.output


def test_since_is_a_span_or_an_instant() -> None:
    now = datetime.now(UTC)
    assert abs(parse_since("24h") - (now - timedelta(hours=24))) < timedelta(seconds=5)
    assert abs(parse_since("90m") - (now - timedelta(minutes=90))) < timedelta(seconds=5)
    assert parse_since("2026-01-04T10:00") == datetime(2026, 1, 4, 10, tzinfo=UTC)
    with pytest.raises(Exception, match="neither a span"):
        parse_since("yesterday")


def test_the_limit_keeps_the_newest_messages_of_each_partition() -> None:
    ranges = [Range("t", 0, 0, 600), Range("t", 1, 100, 500), Range("u", 0, 7, 7)]
    kept, left_out = cap(ranges, 500)
    assert [(r.start, r.end) for r in kept] == [(350, 600), (250, 500), (7, 7)]
    assert left_out == 500 and sum(r.size for r in kept) == 500
    assert cap(ranges, 10_000) == (ranges, 0)


def test_the_limit_leaves_a_small_partition_whole_beside_busy_ones() -> None:
    """Shares by size gave it none: 25 * 200k // 6M is 0."""
    busy = [Range("raw", p, 0, 1_000_000) for p in range(6)]
    kept, left_out = cap([*busy, Range("pending", 0, 0, 25)], 200_000)
    assert kept[-1] == Range("pending", 0, 0, 25)
    assert all(r.size == (200_000 - 25) // 6 for r in kept[:5])
    assert sum(r.size for r in kept) == 200_000 and left_out == 6_000_025 - 200_000


def test_a_corrupt_table_is_a_note_not_a_failed_trace(tmp_path: Path) -> None:
    """A table whose log names a file that is gone cannot be read; the trace says so beside its
    verdict (the storage answers: it is not out of reach)."""
    from claimx_flow.config import Settings
    from claimx_flow.delta.tables import MEDIA
    from claimx_flow.delta.writer import writer_for
    from claimx_flow.trace.tables import read_rows

    settings = Settings(claimx_data_dir=tmp_path / "data")
    row = {
        "media_id": "m1",
        "project_id": "p1",
        "event_id": "e1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    writer_for(settings, MEDIA).write([{k: v for k, v in row.items() if k in MEDIA.columns}])
    for data in (settings.tables_dir / MEDIA.name).rglob("*.parquet"):
        data.unlink()
    notes: list[str] = []
    assert read_rows(settings, MEDIA.name, [[("media_id", "=", "m1")]], notes) == []
    (note,) = notes
    assert note.startswith(f"{MEDIA.name}: not read (") and "\n" not in note
