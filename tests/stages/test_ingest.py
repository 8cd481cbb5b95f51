"""The ingest stage a batch at a time: each record a task and a row, or a dead letter."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from claimx_flow.config import Settings
from claimx_flow.delta.tables import EVENTS
from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.models import EnrichmentTask, FailureInfo, RawEvent
from claimx_flow.stages.ingest import Ingester
from claimx_flow.stages.outputs import StageBatch

SETTINGS = Settings()
GOOD = {"event_type": "PROJECT_FILE_ADDED", "project_id": 7, "ingested_at": "2024-03-01T10:00:00Z"}


def record(offset: int, value: bytes | None) -> KafkaRecord:
    return KafkaRecord("raw", 0, offset, 1_700_000_000_000, b"k", value)


def batch() -> RecordBatch:
    values = [
        json.dumps({**GOOD, "media_id": 1}).encode(),
        b"{not json",
        json.dumps({**GOOD, "eventType": "X", "event_type": None}).encode(),
        None,
        json.dumps({**GOOD, "media_id": 2}).encode(),
        json.dumps([1, 2]).encode(),
    ]
    return RecordBatch("0-raw", [record(offset, value) for offset, value in enumerate(values)])


def ingested() -> float:
    return REGISTRY.get_sample_value("claimx_events_ingested_total") or 0.0


def ingest(records: RecordBatch, settings: Settings = SETTINGS) -> StageBatch:
    return Ingester.from_settings(settings).ingest(records)


def test_every_record_ends_as_a_task_and_row_or_a_dead_letter() -> None:
    before = ingested()
    out = ingest(batch())
    assert ingested() - before == 2  # counted once per good event, not per output
    assert out.lane == "0-raw"  # written on the worker that read it
    tasks = [r for r in out.records if r.topic.endswith("pending")]
    dead = [r for r in out.records if r.topic.endswith("dlq")]
    assert len(tasks) == 2 and len(dead) == 4
    for letter in dead:
        info = FailureInfo.maybe_from_headers(letter.headers)
        assert info is not None and info.error_message
    event = RawEvent.from_kafka(batch().records[0].value)
    task = EnrichmentTask.from_event(event)
    assert (tasks[0].key, tasks[0].value) == (task.kafka_key, task.to_json())
    rows = out.tables[EVENTS.name]
    assert rows.sources == [batch().records[0], batch().records[4]]
    first = rows.rows.to_pylist()[0]
    assert first["event_id"] == event.event_id
    assert first["media_id"] == "1" and first["project_id"] == "7"
    assert first["ingested_at"] == event.ingested_at
    assert first["event_date"] == event.ingested_at.date()
    assert first["raw_data"] == batch().records[0].value.decode()  # type: ignore[union-attr]


def test_raw_data_is_the_event_exactly_as_sent() -> None:
    """Every byte of the message, fields no column knows included: spacing, key order, a
    number's spelling, escapes and non-ASCII text are what the producer sent, not a re-dump."""
    sent = (
        '{ "eventType":"PROJECT_FILE_ADDED", "projectId": 7, "mediaId": 97138881.0,\n'
        ' "ingestedAt": "2024-03-01T10:00:00Z", "newField": {"nested": [1.50, "caf\u00e9"]},'
        ' "name": "Zoë" }'
    ).encode()
    (row,) = ingest(RecordBatch("0-raw", [record(0, sent)])).tables[EVENTS.name].rows.to_pylist()
    assert row["raw_data"] == sent.decode("utf-8")
    assert json.loads(row["raw_data"])["newField"] == {"nested": [1.5, "café"]}
    assert row["media_id"] == "97138881"  # the columns still hold the normalised values


def test_an_event_its_row_cannot_hold_is_dead_lettered_instead_of_its_task() -> None:
    """A value Arrow cannot encode (a lone surrogate in the event type, which JSON allows)
    sends that event to the DLQ and no task for it; its batch-mates land."""
    bad = b'{"event_type": "X\\ud800", "project_id": 7, "ingested_at": "2024-03-01T10:00:00Z"}'
    good = json.dumps(GOOD).encode()
    out = ingest(RecordBatch("0-raw", [record(0, bad), record(1, good)]))
    (task,) = [r for r in out.records if r.topic.endswith("pending")]
    (letter,) = [r for r in out.records if r.topic.endswith("dlq")]
    assert letter.value == bad and "event_type" in (
        FailureInfo.from_headers(letter.headers).error_message
    )
    assert out.tables[EVENTS.name].sources == [record(1, good)]
    assert json.loads(task.value or b"")["event_type"] == "PROJECT_FILE_ADDED"


def test_one_clock_reading_per_batch() -> None:
    rows = ingest(batch()).tables[EVENTS.name].rows
    assert len(set(rows.column("created_at").to_pylist())) == 1


def test_without_delta_writes_only_tasks_and_dead_letters() -> None:
    out = ingest(batch(), SETTINGS.model_copy(update={"enable_delta_writes": False}))
    assert out.tables == {} and len(out.records) == 6
