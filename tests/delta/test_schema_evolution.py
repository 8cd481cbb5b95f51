"""A ``claimx_events`` table made before ``raw_data`` existed (as a deployed pipeline's is):
the writer adds the column it lacks before its first write, old rows read null in it, new rows
keep their raw event, and nothing else about the table changes. (Events are written by
appending the ones the table does not hold: a ``WRITE`` commit, not a ``MERGE``.)"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.delta.tables import EVENTS, TableSpec
from claimx_flow.delta.writer import DeltaWriter, writer_for
from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.stages.ingest import Ingester
from claimx_flow.stages.tables import TableCommitter

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
OLD_SCHEMA = pa.schema([f for f in EVENTS.schema if f.name != "raw_data"])
OLD_EVENTS = TableSpec(
    name=EVENTS.name,
    schema=OLD_SCHEMA,
    keys=EVENTS.keys,
    partition_by=EVENTS.partition_by,
    write_mode=EVENTS.write_mode,
)


def old_row(event_id: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "event_type": "PROJECT_CREATED",
        "project_id": "1",
        "ingested_at": AT,
        "created_at": AT,
        "event_date": date(2026, 11, 27),
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A table as the previous release wrote it: its schema and two commits of rows."""
    settings = Settings(claimx_data_dir=tmp_path / "data")
    old = writer_for(settings, OLD_EVENTS)
    old.write([old_row("old-1"), old_row("old-2")])
    old.write([old_row("old-3")])
    assert "raw_data" not in DeltaTable(old.uri).schema().to_arrow().names
    return settings


def test_the_writer_adds_the_missing_column_before_writing(settings: Settings) -> None:
    writer = writer_for(settings, EVENTS)
    before = DeltaTable(writer.uri).version()
    raw = '{"event_type": "PROJECT_CREATED", "project_id": 1, "future_field": [1, 2]}'
    outcome = writer.write([{**old_row("new-1"), "raw_data": raw}, old_row("old-1")])
    assert (outcome.inserted, outcome.updated) == (1, 0)  # insert-if-absent still holds

    table = DeltaTable(writer.uri)
    schema = table.schema().to_arrow()
    assert list(schema.names) == list(EVENTS.schema.names)  # appended where the spec has it
    assert table.metadata().partition_columns == ["event_date"]
    operations = [c["operation"] for c in table.history()[: table.version() - before]]
    assert operations == ["WRITE", "ADD COLUMN"]
    rows = {r["event_id"]: r["raw_data"] for r in table.to_pyarrow_table().to_pylist()}
    assert rows == {"old-1": None, "old-2": None, "old-3": None, "new-1": raw}


def test_a_table_with_every_column_is_not_altered(settings: Settings) -> None:
    writer_for(settings, EVENTS).write([old_row("a")])
    uri = writer_for(settings, EVENTS).uri
    version = DeltaTable(uri).version()
    again = writer_for(settings, EVENTS)  # a restarted stage opens it anew
    again.write([old_row("b")])
    assert DeltaTable(uri).version() == version + 1  # the write only
    assert again.missing_columns(DeltaTable(uri)) == []


def test_a_new_table_is_made_with_the_column(tmp_path: Path) -> None:
    writer = DeltaWriter(EVENTS, str(tmp_path / "events"))
    writer.write([{**old_row("x"), "raw_data": "{}"}])
    table = DeltaTable(writer.uri)
    assert [c["operation"] for c in table.history()] == ["WRITE", "CREATE TABLE"]
    assert table.to_pyarrow_table().column("raw_data").to_pylist() == ["{}"]


def test_the_ingest_committer_lands_every_event_on_an_old_table(settings: Settings) -> None:
    """What a deployed pipeline does after the upgrade: the events committer's first batch on
    the old table. (Without the column added first, delta-rs 1.6's MERGE, without
    ``merge_schema``, succeeded and silently dropped ``raw_data``.)"""
    values = [
        f'{{"event_type":"PROJECT_CREATED","project_id":"{i}",'
        f'"ingested_at":"2026-11-27T10:00:00Z","event_id":"ev-{i}","x_new":{i}}}'.encode()
        for i in range(5)
    ]
    records = [KafkaRecord("raw", 0, i, None, b"k", v) for i, v in enumerate(values)]
    out = Ingester.from_settings(settings).ingest(RecordBatch("0-raw", records))
    letters: list[object] = []

    class Sender:
        def write_batch(self, items: list[object]) -> None:
            letters.extend(items)

        def close(self) -> None:
            pass

    committer = TableCommitter(
        writer_for(settings, EVENTS),
        Ingester.from_settings(settings).router,
        Sender,
    )
    committer.commit([out.tables[EVENTS.name]])
    assert letters == []
    table = DeltaTable(writer_for(settings, EVENTS).uri).to_pyarrow_table().to_pylist()
    stored = {r["event_id"]: r["raw_data"] for r in table}
    assert {f"ev-{i}": v.decode() for i, v in enumerate(values)}.items() <= stored.items()
