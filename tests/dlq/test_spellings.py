"""A raw event in the events DLQ as its producer spelt it: camelCase ids and type are read as
the ingest stage reads them, so a filtered replay takes it (and a later purge cannot lose it
as "skipped by filter")."""

from __future__ import annotations

import json

from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.stages.ingest import Ingester
from tests.dlq.helpers import Pipeline, claimx, put, read_all

CAMEL = {"eventId": "evt_c", "eventType": "PROJECT_FILE_ADDED", "projectId": 123, "mediaId": 9}
SNAKE = {"event_id": "evt_s", "event_type": "PROJECT_CREATED", "project_id": "456"}


def _dead_lettered(pipeline: Pipeline) -> None:
    """Both events lack their ingestion time: the ingest stage dead-letters them, no ids known."""
    records = [
        KafkaRecord(pipeline["events"], 0, i, None, None, json.dumps(event).encode())
        for i, event in enumerate((CAMEL, SNAKE))
    ]
    out = Ingester.from_settings(pipeline.settings).ingest(RecordBatch("0", records))
    assert [r.topic for r in out.records] == [pipeline["events.dlq"]] * 2
    put(
        pipeline.bootstrap,
        pipeline["events.dlq"],
        [(r.key, r.value, list(r.headers)) for r in out.records],
    )


def test_camel_case_events_match_filters_on_ids_and_type(pipeline: Pipeline) -> None:
    _dead_lettered(pipeline)

    for args in (
        ["--project-id", "123"],
        ["--event-type", "PROJECT_FILE_ADDED"],
        ["--event-ids", "evt_c", "--media-ids", "9"],
    ):
        result = claimx(pipeline, "replay", "events", "--dry-run", "--json", *args)
        summary = json.loads(result.stdout)
        assert (summary["replayed"], summary["skipped_by_filter"]) == (1, 1), args

    shown = json.loads(claimx(pipeline, "inspect", "events", "-o", "json").stdout)["messages"]
    assert {(m["project_id"], m["event_type"]) for m in shown} == {
        ("123", "PROJECT_FILE_ADDED"),
        ("456", "PROJECT_CREATED"),
    }
    sent = claimx(pipeline, "replay", "events", "--project-id", "123")
    assert sent.exit_code == 0, sent.output
    [event] = read_all(pipeline.bootstrap, pipeline["events"])
    assert json.loads(event.value or b"") == CAMEL  # sent as it was
