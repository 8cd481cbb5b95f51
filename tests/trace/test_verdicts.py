"""Verdicts that must not claim more than the trace saw, each on real Kafka and real Delta
tables written the way the stages write them (no pipeline runs: each test places the records,
rows and committed offsets its case needs)."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from pydantic import SecretStr
from rich.console import Console

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.delta.tables import ATTACHMENTS, EVENTS, MEDIA, PROJECTS, TableSpec
from claimx_flow.delta.writer import writer_for
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.clients import consumer_config, producer_config
from claimx_flow.models import FailureInfo
from claimx_flow.trace.collect import TraceOptions, trace
from claimx_flow.trace.model import Target, Trace
from claimx_flow.trace.render import document, view
from tests.isolation import isolated_settings

_projects = itertools.count(7_100_001)


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Pipeline topics of their own (two partitions each) and a data directory of their own."""
    return isolated_settings(kafka_bootstrap, tmp_path_factory.mktemp("verdicts") / "data")


def _project() -> str:
    return str(next(_projects))


def _event_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def _events_row(
    event_id: str, project: str, event_type: str, at: datetime, media: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "project_id": project,
        "media_id": media,
        "ingested_at": at,
        "created_at": at,
        "event_date": at.date(),
        "raw_data": "{}",
    }


def _write(settings: Settings, spec: TableSpec, rows: list[dict[str, Any]]) -> None:
    writer_for(settings, spec).write(
        [{k: v for k, v in row.items() if k in spec.columns} for row in rows]
    )


def _produce(
    settings: Settings,
    topic: str,
    key: str,
    value: dict[str, Any],
    headers: list[tuple[str, bytes]] | None = None,
) -> tuple[int, int]:
    """One record, partitioned as the stages' producers do; its partition and offset."""
    delivered: list[Message] = []
    producer = Producer(producer_config(settings))
    producer.produce(
        topic,
        key=key,
        value=json.dumps(value),
        headers=headers or [],
        on_delivery=lambda err, msg: delivered.append(msg),
    )
    assert producer.flush(30) == 0
    (message,) = delivered
    return message.partition() or 0, message.offset() or 0


def _dead_lettered(settings: Settings, project: str, event: str, now: datetime) -> None:
    """The event's enrichment task in the enrichment DLQ, as enrich routes a 404."""
    failure = FailureInfo(
        original_topic=settings.claimx_enrichment_pending_topic,
        original_partition=0,
        original_offset=0,
        stage="enrich",
        error_category=ErrorCategory.PERMANENT,
        error_class="ProjectNotFound",
        error_message="project not found",
        attempt=1,
        first_failed_at=now,
        last_failed_at=now,
        project_id=project,
        event_id=event,
    )
    task = {"event_id": event, "event_type": "PROJECT_CREATED", "project_id": project}
    _produce(settings, settings.claimx_enrichment_dlq_topic, project, task, failure.to_headers())


def _fillers(settings: Settings, count: int) -> None:
    """Raw events of other projects: a window busier than a tight --limit."""
    producer = Producer(producer_config(settings))
    for n in range(count):
        event = {"eventType": "PROJECT_CREATED", "projectId": 9_000_000 + n, "eventId": f"f{n}"}
        producer.produce(settings.claimx_events_topic, key=str(n), value=json.dumps(event))
    assert producer.flush(30) == 0


def _commit(settings: Settings, stage: str, topic: str, partition: int, offset: int) -> None:
    """The stage's consumer group committed past ``offset``: the stage has read it."""
    group = settings.consumer_group(catalog.stage(stage).consumer)
    consumer = Consumer(consumer_config(settings, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset + 1)], asynchronous=False)
    finally:
        consumer.close()


def _traced(
    settings: Settings, kind: str, target: str, *, since_h: float = 24, limit: int = 200_000
) -> Trace:
    since = datetime.now(UTC) - timedelta(hours=since_h)
    return trace(settings, Target(kind, target), TraceOptions(since, limit))  # type: ignore[arg-type]


def _verdict(found: Trace) -> dict[str, Any]:
    verdict: dict[str, Any] = document(found)["verdict"]
    return verdict


def _shown(found: Trace) -> str:
    """The table view as a terminal shows it."""
    console = Console(record=True, width=400)
    console.print(view(found))
    return console.export_text()


def test_a_dlq_copy_is_read_whatever_the_limit(settings: Settings) -> None:
    """--limit shared by size gave a one-message DLQ partition no share beside a busy raw
    topic, and the dead-lettered event came out "in flight"."""
    project, event = _project(), _event_id("dead")
    now = datetime.now(UTC)
    _write(settings, EVENTS, [_events_row(event, project, "PROJECT_CREATED", now)])
    _dead_lettered(settings, project, event, now)
    _fillers(settings, 40)
    found = _traced(settings, "event", event, limit=1)
    verdict = _verdict(found)
    assert verdict["state"] == "dlq", verdict
    assert verdict["text"].startswith("in DLQ because ProjectNotFound: project not found")
    assert document(found)["scanned"]["skipped"] > 0


def test_a_dlq_copy_beside_rows_that_landed_is_not_the_verdict_of_a_cut_window(
    settings: Settings,
) -> None:
    """A copy dead-lettered, then replayed into what --limit left unread, and enriched: Delta,
    read whole, says the event landed; the DLQ copy is named, not taken for the end."""
    project, event = _project(), _event_id("replayed")
    now = datetime.now(UTC)
    _write(settings, EVENTS, [_events_row(event, project, "PROJECT_CREATED", now)])
    _write(
        settings, PROJECTS, [{"project_id": project, "event_id": event, "last_enriched_at": now}]
    )
    _dead_lettered(settings, project, event, now)
    _fillers(settings, 40)
    verdict = _verdict(_traced(settings, "event", event, limit=1))
    assert verdict["state"] == "landed", verdict
    assert "though an earlier copy was read (in DLQ because ProjectNotFound" in verdict["text"]


def test_a_window_cut_by_the_limit_with_nothing_decisive_is_incomplete(
    settings: Settings,
) -> None:
    project, event = _project(), _event_id("cut")
    _write(settings, EVENTS, [_events_row(event, project, "PROJECT_CREATED", datetime.now(UTC))])
    _fillers(settings, 40)
    found = _traced(settings, "event", event, limit=5)
    verdict = _verdict(found)
    assert verdict["state"] == "incomplete", verdict
    assert verdict["text"].startswith(f"incomplete: {found.skipped:,} messages left unread by ")
    assert "--limit 5" in verdict["text"] and "nothing decisive" in verdict["text"]
    assert "verdict: incomplete: " in _shown(found)


def test_a_read_task_without_evidence_is_not_landed(settings: Settings) -> None:
    """enrich's committed offset past a task says it was read, not what came of it: only a row
    the event wrote makes it landed."""
    project = _project()
    proven, unproven = _event_id("proven"), _event_id("unproven")
    now = datetime.now(UTC)
    _write(
        settings,
        EVENTS,
        [_events_row(e, project, "PROJECT_CREATED", now) for e in (proven, unproven)],
    )
    # The project's row names the event that last changed it: the proven one.
    _write(
        settings,
        PROJECTS,
        [{"project_id": project, "event_id": proven, "last_enriched_at": now}],
    )
    for event in (proven, unproven):
        task = {"event_id": event, "event_type": "PROJECT_CREATED", "project_id": project}
        topic = settings.claimx_enrichment_pending_topic
        _commit(settings, "enrich", topic, *_produce(settings, topic, project, task))

    verdict = _verdict(_traced(settings, "event", proven))
    assert verdict == {**verdict, "state": "landed", "text": "landed: enriched (claimx_projects)"}
    found = _traced(settings, "event", unproven)
    verdict = _verdict(found)
    assert verdict["state"] == "unconfirmed", verdict
    assert verdict["text"].startswith("read but not confirmed: enrich has read its task (")
    assert "no row in Delta names this event" in verdict["text"]
    assert [s["read_by_stage"] for s in document(found)["timeline"] if "role" in s] == [True]


def test_an_event_ingested_before_the_window_is_not_in_flight(settings: Settings) -> None:
    project = _project()
    old, recent = _event_id("old"), _event_id("recent")
    then, now = datetime.now(UTC) - timedelta(days=2), datetime.now(UTC)
    _write(
        settings,
        EVENTS,
        [
            _events_row(old, project, "PROJECT_CREATED", then),
            _events_row(recent, project, "PROJECT_UPDATED", now),
        ],
    )
    # The later event overwrote the project's row: nothing in Delta names the old one now.
    _write(
        settings, PROJECTS, [{"project_id": project, "event_id": recent, "last_enriched_at": now}]
    )
    verdict = _verdict(_traced(settings, "event", old))
    assert verdict["state"] == "before_window", verdict
    assert verdict["text"].startswith(f"ingested {then.isoformat(timespec='seconds')}, before ")
    assert "no failure seen in the window, but its older records were not read" in (verdict["text"])

    verdict = _verdict(_traced(settings, "project", project))
    assert verdict["state"] == "before_window", verdict
    assert verdict["text"].startswith("2 events: 1 before window, 1 landed; first: ingested ")


def test_files_past_the_display_cap_still_count_as_stored(settings: Settings) -> None:
    """The 500 rows a table shows are for display; a project with more files than that is
    judged from all of them."""
    project = _project()
    now = datetime.now(UTC)
    ours = [(_event_id("file"), f"{project}{n}") for n in range(3)]
    _write(
        settings,
        EVENTS,
        [_events_row(e, project, "PROJECT_FILE_ADDED", now, m) for e, m in ours],
    )
    others = [f"{project}-old-{n}" for n in range(600)]

    def stored(media: str) -> dict[str, Any]:
        return {"media_id": media, "project_id": project, "onelake_path": f"file:///x/{media}"}

    _write(settings, ATTACHMENTS, [stored(m) for m in others + [m for _, m in ours]])
    found = _traced(settings, "project", project)
    shown = {f["media_id"] for f in document(found)["files"]}
    assert len(shown) == 500 and not {m for _, m in ours} <= shown  # the case: ours cut off
    assert f"claimx_attachments: showing 500 of {len(others) + 3} matching rows" in found.notes
    verdict = _verdict(found)
    assert verdict == {**verdict, "state": "landed", "text": "3 events: 3 landed"}


def test_a_delta_error_in_the_notes_is_masked(settings: Settings, tmp_path: Path) -> None:
    """Delta's errors name paths and URLs: what reaches the notes is masked as the red line
    is (here a configured password happens to be part of the path)."""
    secret = "pw-Zq81xK"
    masked = settings.model_copy(
        update={
            "claimx_data_dir": tmp_path / secret / "data",
            "claimx_api_password": SecretStr(secret),
        }
    )
    event = _event_id("masked")
    now = datetime.now(UTC)
    _write(masked, EVENTS, [_events_row(event, _project(), "PROJECT_CREATED", now)])
    _write(masked, MEDIA, [{"media_id": "m1", "project_id": "p", "event_id": event}])
    for data in (masked.tables_dir / MEDIA.name).rglob("*.parquet"):
        data.unlink()  # the table's log names a file that is gone: corrupt
    found = _traced(masked, "event", event)
    (note,) = [n for n in found.notes if n.startswith(f"{MEDIA.name}: not read (")]
    assert "***" in note
    assert secret not in json.dumps(document(found)) and secret not in _shown(found)


def test_a_camelcase_event_in_the_events_dlq_is_found_by_its_id(settings: Settings) -> None:
    """Ingest dead-letters an event it cannot read without ids in the headers, and producers
    may spell the body's ids in camelCase: the trace reads them with the event's own aliases."""
    project, event = _project(), _event_id("camel")
    now = datetime.now(UTC)
    failure = FailureInfo(
        original_topic=settings.claimx_events_topic,
        original_partition=0,
        original_offset=0,
        stage="ingest",
        error_category=ErrorCategory.PERMANENT,
        error_class="MalformedMessageError",
        error_message="eventType: unknown event type",
        attempt=1,
        first_failed_at=now,
        last_failed_at=now,
    )
    body = {"eventId": event, "projectId": int(project), "eventType": "UNKNOWN_THING"}
    _produce(settings, settings.claimx_events_dlq_topic, project, body, failure.to_headers())
    verdict = _verdict(_traced(settings, "event", event))
    assert verdict["state"] == "dlq", verdict
    assert "MalformedMessageError" in verdict["text"]
