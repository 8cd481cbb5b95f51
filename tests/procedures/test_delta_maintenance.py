"""Delta upkeep on a real table: compaction keeps the rows, vacuum keeps its retention safety
unless forced, history lists the commits, restore brings back an earlier version."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from claimx_flow.config import Settings
from claimx_flow.delta import maintenance as upkeep
from claimx_flow.delta.tables import EVENTS
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
