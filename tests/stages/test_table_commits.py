"""Rows a Delta table would refuse dead-letter the message they came from; the rest of the
batch commits. Conversion happens where the stage runs (``row_batch``), the MERGE in the
table's committer. Real Delta tables on disk and a real broker for the DLQ records."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from claimx_flow.delta.tables import EVENTS, PROJECTS
from claimx_flow.delta.writer import DeltaWriter
from claimx_flow.kafka.clients import producer_config
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import FailureInfo
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.stages.outputs import SourcedRow
from claimx_flow.stages.tables import TableCommitter, dead_letter, row_batch
from operators.kafka import CheckedProducer
from tests.dlq.helpers import read_all
from tests.isolation import isolated_settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event_row(event_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "PROJECT_CREATED",
        "project_id": "p1",
        "ingested_at": NOW,
        "created_at": NOW,
        "event_date": date(2026, 1, 2),
        **changes,
    }


def source(offset: int) -> KafkaRecord:
    value = json.dumps({"n": offset}).encode()
    return KafkaRecord("claimx.events.raw", 0, offset, 1_700_000_000_000, b"k", value)


@pytest.fixture
def committer_for(kafka_bootstrap: str, tmp_path: Path) -> Any:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")

    def make(spec: Any) -> tuple[Any, str]:
        """``commit(sourced rows)`` as a stage and its table's committer do it together:
        rows converted, refused ones dead-lettered, the rest committed."""
        router = FailureRouter.for_stage(settings, "ingest", settings.claimx_events_dlq_topic)
        writer = DeltaWriter(spec, str(tmp_path / spec.name))
        producer = CheckedProducer(producer_config(settings))
        committer = TableCommitter(writer, router, lambda: producer)

        def commit(items: list[SourcedRow]) -> None:
            batch, refused = row_batch(spec, items)
            producer.write_batch(dead_letter(router, spec.name, refused))
            if batch is not None:
                committer.commit([batch])

        return commit, settings.claimx_events_dlq_topic

    return make


def stored(path: Path) -> list[dict[str, Any]]:
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def test_refused_rows_dead_letter_their_messages_and_the_rest_commit(
    committer_for: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    commit, dlq = committer_for(EVENTS)
    poisons = {
        3: event_row("e3", media_id="lone \ud800 surrogate"),
        7: event_row("e7", project_id=""),
        11: event_row("e11", event_type=None),
        12: event_row("e12", ingested_at="not a time"),
    }
    items: list[SourcedRow] = [(poisons.get(i, event_row(f"e{i}")), source(i)) for i in range(20)]
    commit(items)

    landed = {row["event_id"] for row in stored(tmp_path / EVENTS.name)}
    assert landed == {f"e{i}" for i in range(20) if i not in poisons}
    letters = read_all(kafka_bootstrap, dlq)
    assert sorted(json.loads(m.value or b"")["n"] for m in letters) == sorted(poisons)
    for letter in letters:
        info = FailureInfo.maybe_from_headers(list(letter.headers.items()))
        assert info is not None and info.error_category.value == "permanent"
        assert info.error_message.startswith("claimx_events.")
        assert info.error_class == "RowSchemaError"


def test_two_refused_rows_of_one_message_make_one_letter(
    committer_for: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    commit, dlq = committer_for(PROJECTS)
    bad = {"project_id": "p9", "mfn": "\udfff", "last_enriched_at": NOW}
    worse = {"project_id": "p8", "year_built": 2**70, "last_enriched_at": NOW}
    good = {"project_id": "p1", "mfn": "fine", "last_enriched_at": NOW}
    commit([(bad, source(1)), (worse, source(1)), (good, source(2))])
    assert [r["project_id"] for r in stored(tmp_path / PROJECTS.name)] == ["p1"]
    assert len(read_all(kafka_bootstrap, dlq)) == 1


def test_a_replayed_batch_changes_nothing(committer_for: Any, tmp_path: Path) -> None:
    """Insert-if-absent: the same events again (a replay) add no row; a new one lands."""
    commit, _ = committer_for(EVENTS)
    commit([(event_row(f"e{i}"), source(i)) for i in range(5)])
    commit([(event_row(f"e{i}"), source(i)) for i in range(6)])
    assert sorted(r["event_id"] for r in stored(tmp_path / EVENTS.name)) == [
        f"e{i}" for i in range(6)
    ]


def test_a_table_whose_storage_is_gone_fails_the_commit(committer_for: Any, tmp_path: Path) -> None:
    commit, _ = committer_for(EVENTS)
    (tmp_path / EVENTS.name).write_text("a file where the table's directory should be")
    with pytest.raises(Exception):  # noqa: B017 - whatever delta-rs raises: the step must fail
        commit([(event_row("e1"), source(1))])


@pytest.mark.parametrize("refused", [{"e0"}, {"e0", "e1"}, {"e7"}])
def test_rows_the_merge_refuses_are_dead_lettered_while_their_batch_mates_land(
    committer_for: Any,
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refused: set[str],
) -> None:
    """No real row is known that converts to the table's schema and then fails its MERGE, so
    the writer is made to refuse some keys here: at the head of the batch (two of them: the
    storage is checked before anything lands) or at its end. The batch splits, those rows'
    messages go to the DLQ, the rest land. (A storage that refuses every write fails the step
    instead: ``tests/storage/test_delta_azurite.py``.)"""
    commit, dlq = committer_for(EVENTS)
    real = DeltaWriter.merge_table

    def refuse(writer: DeltaWriter, rows: Any) -> Any:
        if refused & set(rows.column("event_id").to_pylist()):
            raise DeltaError("a row delta-rs refuses")
        return real(writer, rows)

    monkeypatch.setattr(DeltaWriter, "merge_table", refuse)
    commit([(event_row(f"e{i}"), source(i)) for i in range(8)])
    assert sorted(r["event_id"] for r in stored(tmp_path / EVENTS.name)) == sorted(
        f"e{i}" for i in range(8) if f"e{i}" not in refused
    )
    letters = read_all(kafka_bootstrap, dlq)
    assert sorted(json.loads(m.value or b"")["n"] for m in letters) == sorted(
        int(event_id[1:]) for event_id in refused
    )


def test_an_outage_after_the_storage_was_checked_still_fails_the_step(
    committer_for: Any, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two refused rows at the head of a batch make the committer check the storage, which
    takes a write; then the storage goes down while the split goes on (made here by the
    writer refusing every write after that check: the real outage is the Azurite test's).
    Found in review: one check per commit let every row refused after it go to the DLQ."""
    commit, dlq = committer_for(EVENTS)
    real_merge, real_check = DeltaWriter.merge_table, DeltaWriter.write_refused
    down = False

    def merge(writer: DeltaWriter, rows: Any) -> Any:
        if down or {"e0", "e1"} & set(rows.column("event_id").to_pylist()):
            raise DeltaError("refused")
        return real_merge(writer, rows)

    def check(writer: DeltaWriter) -> Exception | None:
        nonlocal down
        if down:
            return OSError("the storage takes no write")
        refusal, down = real_check(writer), True
        return refusal

    monkeypatch.setattr(DeltaWriter, "merge_table", merge)
    monkeypatch.setattr(DeltaWriter, "write_refused", check)
    with pytest.raises(OSError, match="takes no write"):
        commit([(event_row(f"e{i}"), source(i)) for i in range(8)])
    assert read_all(kafka_bootstrap, dlq) == []
