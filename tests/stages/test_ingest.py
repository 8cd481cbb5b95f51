"""The ingest stage a batch at a time: the same outputs, in order, as one record at a time."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from claimx_flow.config import Settings
from claimx_flow.delta.tables import EVENTS
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import EnrichmentTask, FailureInfo, RawEvent
from claimx_flow.stages.ingest import Ingester, event_row

SETTINGS = Settings()
GOOD = {"event_type": "PROJECT_FILE_ADDED", "project_id": 7, "ingested_at": "2024-03-01T10:00:00Z"}


def record(offset: int, value: bytes | None) -> KafkaRecord:
    return KafkaRecord("raw", 0, offset, 1_700_000_000_000, b"k", value)


def batch() -> list[KafkaRecord]:
    values = [
        json.dumps({**GOOD, "media_id": 1}).encode(),
        b"{not json",
        json.dumps({**GOOD, "eventType": "X", "event_type": None}).encode(),
        None,
        json.dumps({**GOOD, "media_id": 2}).encode(),
        json.dumps([1, 2]).encode(),
    ]
    return [record(offset, value) for offset, value in enumerate(values)]


def ingested() -> float:
    return REGISTRY.get_sample_value("claimx_events_ingested_total") or 0.0


def test_a_batch_gives_each_records_outputs_in_record_order() -> None:
    ingest = Ingester.from_settings(SETTINGS)
    records = batch()
    before = ingested()
    outputs = ingest.ingest_batch(records)
    good = ingested() - before
    one_by_one = [output for r in records for output in ingest(r)]

    # Rows carry the clock (created_at), read once per batch: compare everything else.
    def comparable(output: object) -> object:
        if isinstance(output, OutboundRecord):
            return output.topic, output.key, output.value, _without_timestamps(output.headers)
        table, (row, source) = output  # type: ignore[misc]
        return table, source, {k: v for k, v in row.items() if k != "created_at"}

    assert [comparable(o) for o in outputs] == [comparable(o) for o in one_by_one]
    assert good == 2  # counted once per good event, not per output


def test_every_record_ends_as_a_task_and_row_or_a_dead_letter() -> None:
    outputs = Ingester.from_settings(SETTINGS).ingest_batch(batch())
    tasks = [o for o in outputs if isinstance(o, OutboundRecord) and o.topic.endswith("pending")]
    dead = [o for o in outputs if isinstance(o, OutboundRecord) and o.topic.endswith("dlq")]
    rows = [o for o in outputs if not isinstance(o, OutboundRecord)]
    assert len(tasks) == len(rows) == 2 and len(dead) == 4
    for letter in dead:
        info = FailureInfo.maybe_from_headers(letter.headers)
        assert info is not None and info.error_message
    event = RawEvent.from_kafka(batch()[0].value)
    task = EnrichmentTask.from_event(event)
    assert (tasks[0].key, tasks[0].value) == (task.kafka_key, task.to_json())
    row, source = rows[0][1]  # type: ignore[misc]
    assert rows[0][0] == EVENTS.name and source == batch()[0]
    expected = event_row(event, raw=batch()[0].value)
    assert {**row, "created_at": None} == {**expected, "created_at": None}
    assert row["raw_data"] == batch()[0].value.decode()  # type: ignore[union-attr]


def test_raw_data_is_the_event_exactly_as_sent() -> None:
    """Every byte of the message, fields no column knows included: spacing, key order, a
    number's spelling, escapes and non-ASCII text are what the producer sent, not a re-dump."""
    sent = (
        '{ "eventType":"PROJECT_FILE_ADDED", "projectId": 7, "mediaId": 97138881.0,\n'
        ' "ingestedAt": "2024-03-01T10:00:00Z", "newField": {"nested": [1.50, "caf\u00e9"]},'
        ' "name": "Zoë" }'
    ).encode()
    (_task, (table, (row, _))) = Ingester.from_settings(SETTINGS).ingest_batch([record(0, sent)])
    assert table == EVENTS.name
    assert row["raw_data"] == sent.decode("utf-8")
    assert json.loads(row["raw_data"])["newField"] == {"nested": [1.5, "café"]}
    assert row["media_id"] == "97138881"  # the columns still hold the normalised values
    assert EVENTS.to_arrow([row]).column("raw_data").to_pylist() == [sent.decode()]


def test_one_clock_reading_per_batch() -> None:
    outputs = Ingester.from_settings(SETTINGS).ingest_batch(batch())
    stamps = {o[1][0]["created_at"] for o in outputs if not isinstance(o, OutboundRecord)}
    assert len(stamps) == 1


def test_without_delta_writes_only_tasks_and_dead_letters() -> None:
    ingest = Ingester.from_settings(SETTINGS.model_copy(update={"enable_delta_writes": False}))
    assert all(isinstance(o, OutboundRecord) for o in ingest.ingest_batch(batch()))


def _without_timestamps(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers if not k.endswith("_at")]
