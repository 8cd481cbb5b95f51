"""``claimx delta`` on real local tables: history as JSON; optimize with Z-order; vacuum and
restore show their plan, ask on a terminal (a real pseudo-terminal here), take ``--yes`` and
refuse without a terminal; the exit codes of ``claimx dlq``."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable, TableFeatures, write_deltalake
from typer.testing import CliRunner, Result

from claimx_flow.cli.delta_cmd import app
from claimx_flow.config import Settings
from claimx_flow.delta import maintenance as upkeep
from claimx_flow.delta.tables import EVENTS, MEDIA
from claimx_flow.delta.writer import writer_for
from claimx_flow.lab.process import free_port

AT = datetime(2026, 11, 27, tzinfo=UTC)
CLAIMX = str(Path(sys.executable).with_name("claimx"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def media_rows(start: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "media_id": str(5_000_000_000 + i),
            "project_id": str(5_000_000 + i % 7),
            "media_name": f"photo_{i}.jpg",
            "last_enriched_at": AT,
        }
        for i in range(start, start + count)
    ]


@pytest.fixture
def data_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``claimx_media`` in six commits (create + five appends of new media, five small files),
    and a small
    partitioned ``claimx_events``."""
    data = tmp_path / "data"
    clean_env.setenv("CLAIMX_DATA_DIR", str(data))
    settings = Settings(claimx_data_dir=data)
    media = writer_for(settings, MEDIA)
    for batch in range(5):
        media.write(media_rows(batch * 20, 20))
    event = {
        "event_id": "e1",
        "event_type": "PROJECT_CREATED",
        "project_id": "1",
        "ingested_at": AT,
        "created_at": AT,
        "event_date": date(2026, 11, 27),
    }
    writer_for(settings, EVENTS).write([event])
    return data


def delta(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def flat(result: Result) -> str:
    """The output with its line breaks (Rich wraps at the terminal's width) as spaces."""
    return " ".join(result.output.split())


def table(data: Path, name: str = MEDIA.name) -> DeltaTable:
    return DeltaTable(str(data / "tables" / name))


def parquet_files(data: Path, name: str = MEDIA.name) -> set[str]:
    return {p.name for p in (data / "tables" / name).rglob("*.parquet")}


def compacted(data: Path) -> set[str]:
    """Compact, so that the five small files are unreferenced: what a vacuum removes."""
    before = parquet_files(data)
    assert delta("optimize", "-t", MEDIA.name).exit_code == 0
    return before


# history ---------------------------------------------------------------------------------------


def test_history_as_json_and_as_a_table(data_dir: Path) -> None:
    result = delta("history", "-t", MEDIA.name, "--output", "json", "--limit", "3")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["table"] == MEDIA.name
    assert [c["version"] for c in document["commits"]] == [5, 4, 3]
    assert {c["operation"] for c in document["commits"]} == {"WRITE"}  # new keys: appended
    assert all(c["timestamp_iso"].endswith("+00:00") for c in document["commits"])

    view = delta("history", "-t", MEDIA.name)
    assert view.exit_code == 0 and "claimx_media history" in flat(view)
    assert "CREATE TABLE" in flat(view)


def test_delta_maintenance_in_production_needs_no_kafka(
    data_dir: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """A maintenance job (a CronJob running ``claimx delta optimize``) talks to storage only:
    production settings without a broker are enough."""
    clean_env.setenv("CLAIMX_ENV", "production")
    clean_env.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = delta("history", "-t", MEDIA.name, "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["table"] == MEDIA.name


def test_an_unknown_or_absent_table_is_exit_code_2(data_dir: Path) -> None:
    unknown = delta("history", "-t", "claimx_nonsense", "-o", "json")
    assert unknown.exit_code == 2 and "unknown table" in flat(unknown)
    absent = delta("vacuum", "-t", "claimx_tasks", "--yes")
    assert absent.exit_code == 2 and "no Delta table" in flat(absent)


def test_unreachable_storage_is_one_uncoloured_line_and_exit_code_2(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """OneLake on a closed port: delta-rs says so in several lines with terminal colours,
    whatever the output is; the operator gets one plain line naming it."""
    clean_env.setenv("ONELAKE_WORKSPACE_ID", "ws")
    clean_env.setenv("ONELAKE_LAKEHOUSE_ID", "lh")
    clean_env.setenv("ONELAKE_ENDPOINT", f"http://127.0.0.1:{free_port()}/devstoreaccount1")
    clean_env.setenv("ONELAKE_ACCOUNT_KEY", base64.b64encode(b"k" * 64).decode())
    clean_env.setenv("RUST_BACKTRACE", "1")
    result = delta("history", "-t", MEDIA.name)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error:") and "\x1b" not in line
    assert "backtrace" not in line.lower()


def test_a_damaged_log_is_one_line_without_the_backtrace(data_dir: Path) -> None:
    """delta-rs's kernel errors carry a backtrace's frames with no header ("0: <unknown>")."""
    (first, *_) = sorted((data_dir / "tables" / MEDIA.name / "_delta_log").glob("*.json"))
    first.write_text("not json{")
    result = delta("history", "-t", MEDIA.name)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error:") and "Json error" in line
    assert "0: " not in line and "pthread" not in line


# optimize --------------------------------------------------------------------------------------


def test_optimize_z_orders_on_the_columns_asked(data_dir: Path) -> None:
    rows = table(data_dir).to_pyarrow_table().num_rows
    asked = ("--zorder-by", "project_id, media_id")
    result = delta("optimize", "-t", MEDIA.name, *asked, "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["zorder_by"] == ["project_id", "media_id"]
    assert document["metrics"]["numFilesRemoved"] == 5
    latest = table(data_dir).history(1)[0]
    assert latest["operation"] == "OPTIMIZE"
    assert latest["operationMetrics"]["plannerStrategy"] == "zOrder"
    assert json.loads(latest["zOrderBy"]) == ["project_id", "media_id"]  # the commit says so
    assert "zOrderBy" in delta("history", "-t", MEDIA.name, "--limit", "1").output
    assert table(data_dir).to_pyarrow_table().num_rows == rows == 100

    plain = delta("optimize", "-t", MEDIA.name)
    assert plain.exit_code == 0 and "files rewritten into" in flat(plain)


@pytest.mark.parametrize(
    ("name", "columns", "message"),
    [
        (MEDIA.name, "project_id,nope", "nope not a column"),
        (EVENTS.name, "event_date", "event_date is a partition column"),
        (MEDIA.name, "media_id,media_id", "named twice"),
        (MEDIA.name, " , ", "at least one column"),
    ],
)
def test_optimize_refuses_columns_it_cannot_z_order_on(
    data_dir: Path, name: str, columns: str, message: str
) -> None:
    version = table(data_dir, name).version()
    result = delta("optimize", "-t", name, "--zorder-by", columns)
    assert result.exit_code == 2
    assert message in flat(result)
    assert table(data_dir, name).version() == version


# vacuum ----------------------------------------------------------------------------------------

VACUUM_NOW = ("vacuum", "-t", MEDIA.name, "--retention-hours", "0", "--force")


def test_vacuum_refuses_without_a_terminal_and_without_yes(data_dir: Path) -> None:
    before = compacted(data_dir)
    result = delta(*VACUUM_NOW)  # CliRunner's stdin is not a terminal
    assert result.exit_code == 2
    assert "refusing to vacuum" in flat(result) and "--yes" in flat(result)
    assert "5 file(s)" in flat(result)  # the plan is shown all the same
    assert parquet_files(data_dir) >= before  # nothing removed


def test_vacuum_dry_run_shows_the_plan_and_removes_nothing(data_dir: Path) -> None:
    before = compacted(data_dir)
    result = delta(*VACUUM_NOW, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["dry_run"] is True and document["removed"] == []
    assert {Path(f).name for f in document["files"]} == before
    assert document["bytes"] > 0 and document["forced"] is True
    view = delta(*VACUUM_NOW, "--dry-run")
    assert "5 file(s) unreferenced and older than 0 hours (forced)" in flat(view)
    assert parquet_files(data_dir) >= before


def test_vacuum_with_yes_removes_what_the_plan_showed(data_dir: Path) -> None:
    before = compacted(data_dir)
    rows = table(data_dir).to_pyarrow_table().num_rows
    result = delta(*VACUUM_NOW, "--yes", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert sorted(document["removed"]) == sorted(document["files"])
    assert parquet_files(data_dir).isdisjoint(before)
    assert table(data_dir).to_pyarrow_table().num_rows == rows

    again = delta(*VACUUM_NOW, "--yes")
    assert again.exit_code == 1 and "nothing to remove" in flat(again)


def test_vacuum_keeps_the_retention_check_unless_forced(data_dir: Path) -> None:
    compacted(data_dir)
    result = delta("vacuum", "-t", MEDIA.name, "--retention-hours", "1", "--yes")
    assert result.exit_code == 2 and "--force" in flat(result)
    default = delta("vacuum", "-t", MEDIA.name, "--dry-run")  # a week: recent files stay
    assert default.exit_code == 1 and "168 hours" in flat(default)


# restore ---------------------------------------------------------------------------------------


def test_restore_refuses_without_a_terminal_and_without_yes(data_dir: Path) -> None:
    result = delta("restore", "-t", MEDIA.name, "--version", "2")
    assert result.exit_code == 2 and "refusing to restore" in flat(result)
    assert "version 2 becomes current as version 6" in flat(result)
    assert table(data_dir).version() == 5


def test_restore_dry_run_names_the_version_that_becomes_current(data_dir: Path) -> None:
    result = delta("restore", "-t", MEDIA.name, "--version", "2", "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["current"]["version"] == 5 and document["current"]["files"] == 5
    assert document["target"] == {**document["target"], "version": 2, "files": 2}
    assert document["target"]["operation"] == "WRITE"
    assert document["new_version"] == 6 and document["dry_run"] is True
    assert table(data_dir).version() == 5


def test_restore_with_yes_makes_the_version_current(data_dir: Path) -> None:
    result = delta("restore", "-t", MEDIA.name, "--version", "2", "--yes")
    assert result.exit_code == 0, result.output
    assert "version 2 restored as version 6" in flat(result)
    assert table(data_dir).version() == 6
    assert table(data_dir).to_pyarrow_table().num_rows == 40

    same = delta("restore", "-t", MEDIA.name, "--version", "6", "--yes")
    assert same.exit_code == 1 and "already current" in flat(same)


def test_a_restore_names_what_it_drops_and_the_replay_that_brings_it_back(data_dir: Path) -> None:
    """Rows committed after the target version leave the table though their events were read:
    the plan says since when, and the command that reads them again."""
    commits = {c["version"]: c["timestamp"] for c in table(data_dir).history()}
    since = datetime.fromtimestamp(commits[3] / 1000, tz=UTC).isoformat(timespec="seconds")
    plan = delta("restore", "-t", MEDIA.name, "--version", "2", "--dry-run", "-o", "json")
    document = json.loads(plan.output)
    assert document["dropped_since"][:19] == since[:19]  # the hint's seconds: never later
    assert f"claimx recovery reset enrich --to-datetime {since}" in document["replay"]
    done = delta("restore", "-t", MEDIA.name, "--version", "2", "--yes")
    assert f"claimx recovery reset enrich --to-datetime {since}" in flat(done)


def test_a_restore_refuses_a_table_that_moved_since_its_plan(data_dir: Path) -> None:
    """A writer's commit between the plan and the answer would be undone too, unshown."""
    settings = Settings(claimx_data_dir=data_dir)
    plan = upkeep.plan_restore(settings, MEDIA.name, 2)
    writer_for(settings, MEDIA).write(media_rows(500, 3))
    with pytest.raises(upkeep.MaintenanceError, match="is at 6 now"):
        upkeep.execute_restore(settings, plan)
    assert table(data_dir).version() == 6
    assert table(data_dir).to_pyarrow_table().num_rows == 103


def test_a_restore_onto_a_vacuumed_version_is_warned_and_changes_nothing(data_dir: Path) -> None:
    """Version 2's five small files are compacted away, then vacuumed: the plan says so before
    asking, and the restore delta-rs refuses is one line and leaves the table as it was."""
    compacted(data_dir)
    assert delta(*VACUUM_NOW, "--yes").exit_code == 0
    current = table(data_dir).version()

    plan = delta("restore", "-t", MEDIA.name, "--version", "2", "--dry-run", "-o", "json")
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.output)["vacuumed_after"] == current
    view = delta("restore", "-t", MEDIA.name, "--version", "2", "--dry-run")
    assert f"vacuumed at version {current}" in flat(view)

    result = delta("restore", "-t", MEDIA.name, "--version", "2", "--yes")
    assert result.exit_code == 2
    assert "needs files that were deleted by the vacuum" in flat(result)
    assert "Traceback" not in result.output
    assert table(data_dir).version() == current

    after = delta("restore", "-t", MEDIA.name, "--version", str(current - 2), "--dry-run")
    assert "vacuumed" not in flat(after)  # the compaction's version needs no vacuumed file


def test_restore_by_time_takes_the_last_commit_at_or_before_it(data_dir: Path) -> None:
    commits = {c["version"]: c["timestamp"] for c in table(data_dir).history()}
    at = datetime.fromtimestamp(commits[3] / 1000, tz=UTC)
    naive = at.replace(tzinfo=None).isoformat()  # UTC without an offset, as documented
    plan = delta("restore", "-t", MEDIA.name, "--timestamp", naive, "--dry-run", "-o", "json")
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.output)["target"]["version"] == 3
    early = (datetime.fromtimestamp(commits[0] / 1000, tz=UTC) - timedelta(days=1)).replace(
        tzinfo=None
    )
    before_all = delta("restore", "-t", MEDIA.name, "--timestamp", early.isoformat(), "--yes")
    assert before_all.exit_code == 2 and "no commit at or before" in flat(before_all)


def test_restore_asks_for_exactly_one_existing_version(data_dir: Path) -> None:
    assert delta("restore", "-t", MEDIA.name).exit_code == 2
    both = delta("restore", "-t", MEDIA.name, "--version", "1", "--timestamp", "2026-01-01")
    assert both.exit_code == 2
    missing = delta("restore", "-t", MEDIA.name, "--version", "42", "--yes")
    assert missing.exit_code == 2 and "no version 42" in flat(missing)


# in a real terminal ----------------------------------------------------------------------------


def in_terminal(
    args: list[str], answer: str | None, env: dict[str, str], stdout: int | None = None
) -> tuple[int, str]:
    """Run ``claimx`` on a pseudo-terminal, answer its question (if ``answer``), return (exit
    code, screen without colours). ``stdout``: where its stdout goes instead, as a script
    pipes it."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [CLAIMX, *args],
        stdin=slave,
        stdout=slave if stdout is None else stdout,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen, answered = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            if answer is not None and not answered and b"[y/N]" in screen:
                os.write(master, answer.encode() + b"\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        code = process.wait(timeout=30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    text = ANSI.sub("", screen.decode(errors="replace"))
    assert answered == (answer is not None), text
    return code, text


def test_in_a_terminal_restore_and_vacuum_ask_and_respect_the_answer(data_dir: Path) -> None:
    env = {**os.environ, "CLAIMX_ENV": "local", "CLAIMX_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    restore = ["delta", "restore", "-t", MEDIA.name, "--version", "2"]

    code, screen = in_terminal(restore, "n", env)
    assert code == 1 and "nothing changed" in screen and table(data_dir).version() == 5
    code, screen = in_terminal(restore, "y", env)
    assert code == 0, screen
    assert "Make version 2 of claimx_media current (as version 6)?" in screen
    assert "version 2 becomes current as version 6" in screen  # the plan, before the question
    assert table(data_dir).to_pyarrow_table().num_rows == 40

    # Unreferenced now: the three files the restore dropped and the two the compaction merges.
    before = parquet_files(data_dir)
    code, screen = in_terminal(["delta", "optimize", "-t", MEDIA.name], None, env)
    assert code == 0 and "compacting claimx_media…" in screen, screen  # the spinner
    assert "2 files rewritten into 1" in screen
    vacuum = ["delta", *VACUUM_NOW]
    code, screen = in_terminal(vacuum, "n", env)
    assert code == 1 and "Permanently delete 5 file(s) from claimx_media?" in screen
    assert "nothing changed" in screen and parquet_files(data_dir) >= before
    code, screen = in_terminal(vacuum, "y", env)
    assert code == 0 and "deleted 5 file(s)" in screen, screen
    assert "vacuuming claimx_media (5 files)…" in screen  # the spinner, on a terminal
    assert len(parquet_files(data_dir)) == 1
    assert table(data_dir).to_pyarrow_table().num_rows == 40


@pytest.mark.parametrize(
    "args",
    [
        ("vacuum", "--retention-hours", "9" * 17, "--dry-run"),
        ("history", "--limit", "9" * 23),
        ("optimize", "--target-size", "9" * 23),
    ],
)
def test_a_number_past_what_delta_rs_holds_is_refused_in_words(
    data_dir: Path, args: tuple[str, ...]
) -> None:
    """Each was a traceback: a panic in delta-rs (a duration out of bounds) or an
    OverflowError (an integer too big for it)."""
    result = delta(args[0], "-t", MEDIA.name, *args[1:])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert table(data_dir).version() == 5  # nothing was done


def test_asked_on_a_terminal_the_json_output_is_still_one_document(
    data_dir: Path, tmp_path: Path
) -> None:
    """The plan and the question go to the terminal (stderr), the document alone to stdout."""
    compacted(data_dir)
    env = {**os.environ, "CLAIMX_ENV": "local", "CLAIMX_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    with (tmp_path / "stdout").open("w+b") as out:
        code, screen = in_terminal(["delta", *VACUUM_NOW, "-o", "json"], "y", env, out.fileno())
        out.seek(0)
        document = json.loads(out.read())
    assert code == 0, screen
    assert "Permanently delete 5 file(s) from claimx_media?" in screen
    assert sorted(document["removed"]) == sorted(document["files"])


def test_stats_count_rows_from_the_log_and_keys_held_twice(data_dir: Path) -> None:
    """The runbook's weekly row-count check: rows and files without reading data, tables not
    written yet named as such; --keys finds a key two rows hold, which the writers never make
    (here an append that bypasses them) and exits 1 naming the table."""
    shown = delta("stats", "-o", "json")
    assert shown.exit_code == 0, shown.output
    by_name = {t["name"]: t for t in json.loads(shown.stdout)["tables"]}
    assert set(by_name) == set(upkeep.TABLES)
    media = by_name[MEDIA.name]
    assert (media["rows"], media["files"], media["version"]) == (100, 5, 5)  # six commits
    assert media["bytes"] == sum(
        f.stat().st_size for f in (data_dir / "tables" / MEDIA.name).rglob("*.parquet")
    )
    assert by_name[EVENTS.name]["rows"] == 1
    assert not by_name["claimx_tasks"]["exists"]

    clean = delta("stats", "-t", MEDIA.name, "--keys", "-o", "json")
    assert clean.exit_code == 0, clean.output
    (checked,) = json.loads(clean.stdout)["tables"]
    assert checked["key_check"]["distinct"] == 100 and checked["key_check"]["duplicated"] == 0

    again = DeltaTable(str(data_dir / "tables" / MEDIA.name)).to_pyarrow_table().slice(0, 2)
    write_deltalake(str(data_dir / "tables" / MEDIA.name), again, mode="append")
    twice = delta("stats", "-t", MEDIA.name, "--keys")
    assert twice.exit_code == 1
    assert "keys held by more than one row in claimx_media" in flat(twice)
    document = json.loads(delta("stats", "-t", MEDIA.name, "--keys", "-o", "json").stdout)
    (checked,) = document["tables"]
    assert checked["key_check"]["duplicated"] == 2 and checked["rows"] == 102
    assert {e["rows"] for e in checked["key_check"]["examples"]} == {2}
    assert document["duplicated_keys_in"] == [MEDIA.name]

    unknown = delta("stats", "-t", "claimx_nothing")
    assert unknown.exit_code == 2 and "unknown table" in flat(unknown)


def test_stats_say_where_they_looked_when_no_table_is_there(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A mistyped CLAIMX_DATA_DIR (or lakehouse) reads as a pipeline that wrote nothing: exit 1
    naming the place."""
    clean_env.setenv("CLAIMX_DATA_DIR", str(tmp_path / "typo"))
    shown = delta("stats")
    assert shown.exit_code == 1
    assert f"no table there yet: looked in {tmp_path / 'typo' / 'tables'}" in flat(shown)


def test_stats_do_not_count_rows_deletion_vectors_may_have_removed(data_dir: Path) -> None:
    """The files' counts still hold rows a deletion vector removed (Fabric writes them)."""
    path = str(data_dir / "tables" / MEDIA.name)
    features = [TableFeatures.DeletionVectors]
    DeltaTable(path).alter.add_feature(features, allow_protocol_versions_increase=True)
    (media,) = json.loads(delta("stats", "-t", MEDIA.name, "-o", "json").stdout)["tables"]
    assert media["rows"] is None and "deletion vectors" in media["rows_unknown"]
