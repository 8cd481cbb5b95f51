"""Delta upkeep on a real table: compaction keeps the rows, vacuum keeps its retention safety
unless forced, history lists the commits, restore brings back an earlier version; Z-order
clusters a table so a lookup by its columns skips most files; the plans of vacuum and restore
say what the change would be."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from claimx_flow.config import Settings
from claimx_flow.delta import maintenance as upkeep
from claimx_flow.delta.tables import EVENTS, MEDIA
from claimx_flow.delta.writer import writer_for
from claimx_flow.lab.inventory import table_rows

AT = datetime(2026, 11, 27, tzinfo=UTC)


def events(start: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"e{i}",
            "event_type": "PROJECT_CREATED",
            "project_id": "1",
            "ingested_at": AT,
            "created_at": AT,
            "event_date": date(2026, 11, 27),
        }
        for i in range(start, start + count)
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(claimx_data_dir=tmp_path / "data")
    writer = writer_for(settings, EVENTS)
    for batch in range(5):  # five small commits, five small files
        writer.write(events(batch * 10, 10))
    return settings


def test_optimize_history_restore_and_vacuum(settings: Settings) -> None:
    compacted = upkeep.optimize(settings, "claimx_events")
    assert compacted["numFilesRemoved"] >= 5 and compacted["numFilesAdded"] == 1
    assert table_rows(settings, "claimx_events") == 50

    commits = upkeep.history(settings, "claimx_events")
    assert commits[0]["operation"] == "OPTIMIZE"
    assert [c["version"] for c in commits] == sorted((c["version"] for c in commits), reverse=True)

    upkeep.restore(settings, "claimx_events", 2)  # create + two merges
    assert table_rows(settings, "claimx_events") == 20

    # The files optimize replaced are recent: the default retention keeps them.
    assert upkeep.vacuum(settings, "claimx_events", dry_run=True) == []
    with pytest.raises(upkeep.MaintenanceError, match="--force"):
        upkeep.vacuum(settings, "claimx_events", retention_hours=0, dry_run=True)
    forced = upkeep.vacuum(settings, "claimx_events", retention_hours=0, dry_run=False, force=True)
    assert forced  # unreferenced files really went
    assert table_rows(settings, "claimx_events") == 20  # the current version is intact


def test_unknown_or_absent_tables_are_clear_errors(tmp_path: Path) -> None:
    settings = Settings(claimx_data_dir=tmp_path / "empty")
    with pytest.raises(upkeep.MaintenanceError, match="unknown table"):
        upkeep.history(settings, "claimx_nonsense")
    with pytest.raises(upkeep.MaintenanceError, match="no Delta table"):
        upkeep.history(settings, "claimx_media")


def media_batch(batch: int, projects: int = 20, per_project: int = 10) -> list[dict[str, object]]:
    """One enrichment batch: a few media of every project, as interleaved traffic writes them."""
    return [
        {
            "media_id": f"{batch:03d}{project:03d}{n:03d}",
            "project_id": f"P{project:03d}",
            "media_name": f"photo {batch}-{project}-{n}.jpg" * 4,
            "last_enriched_at": AT,
        }
        for project in range(projects)
        for n in range(per_project)
    ]


def files_holding(settings: Settings, column: str, value: str) -> tuple[int, int]:
    """(files whose min/max statistics of ``column`` may hold ``value``, files in the table):
    what a lookup by that value must read."""
    actions = pa.table(upkeep.open_table(settings, MEDIA.name).get_add_actions(flatten=True))
    lows, highs = actions.column(f"min.{column}"), actions.column(f"max.{column}")
    hits = sum(
        1 for lo, hi in zip(lows.to_pylist(), highs.to_pylist(), strict=True) if lo <= value <= hi
    )
    return hits, actions.num_rows


def test_z_order_lets_a_lookup_by_project_skip_most_files(tmp_path: Path) -> None:
    """Interleaved batches give every file every project: a lookup by project reads them all.
    Z-ordered on project_id (small target files, as a large table has), a project's rows sit
    in a file or two, and the file statistics let a reader skip the rest."""
    settings = Settings(claimx_data_dir=tmp_path / "data")
    writer = writer_for(settings, MEDIA)
    for batch in range(12):
        writer.write(media_batch(batch))
    assert files_holding(settings, "project_id", "P007") == (12, 12)

    metrics = upkeep.optimize(settings, MEDIA.name, ["project_id"], target_size=16 * 1024)
    hits, files = files_holding(settings, "project_id", "P007")
    assert metrics["numFilesRemoved"] == 12 and files >= 3
    assert hits == 1, (hits, files)
    assert table_rows(settings, MEDIA.name) == 12 * 200
    commit = upkeep.history(settings, MEDIA.name, 1)[0]
    assert json.loads(commit[upkeep.ZORDER_BY]) == ["project_id"]


def test_z_order_refuses_unknown_and_partition_columns(settings: Settings) -> None:
    with pytest.raises(upkeep.MaintenanceError, match="not a column"):
        upkeep.optimize(settings, "claimx_events", ["nope"])
    with pytest.raises(upkeep.MaintenanceError, match="partition column"):
        upkeep.optimize(settings, "claimx_events", ["event_date"])
    upkeep.optimize(settings, "claimx_events", ["project_id", "event_id"])
    assert table_rows(settings, "claimx_events") == 50


def test_vacuum_and_restore_plans_say_what_would_change(settings: Settings) -> None:
    upkeep.optimize(settings, "claimx_events")
    plan = upkeep.plan_vacuum(settings, "claimx_events", retention_hours=0, force=True)
    assert len(plan.files) == 5 and plan.bytes and plan.version == 6
    assert upkeep.execute_vacuum(settings, plan) == plan.files
    again = upkeep.plan_vacuum(settings, "claimx_events", retention_hours=0, force=True)
    assert again.files == []  # what is gone is not planned again

    current = upkeep.history(settings, "claimx_events", 1)[0]["version"]  # vacuum commits too
    restore = upkeep.plan_restore(settings, "claimx_events", current)
    assert not restore.changes_anything
    with pytest.raises(upkeep.MaintenanceError, match="no version 99"):
        upkeep.plan_restore(settings, "claimx_events", 99)
