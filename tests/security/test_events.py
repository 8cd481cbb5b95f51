"""Hostile raw events: each ends in the events DLQ (or, when it is readable, in Delta and then
the enrichment DLQ) with its reason and a count, and the partition keeps flowing behind it.

Two levels: every case through the ingest stage in-process (exact destination, headers and
metric deltas per case), then all of them at once through real ingest and enrich stage
processes on real Kafka and the simulator, read back from the topics, tables and ``/metrics``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.request
from collections import Counter

import pytest
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.delta.tables import EVENTS
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord, RecordBatch
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.models import EnrichmentTask, FailureInfo, RawEvent
from claimx_flow.models.events import MAX_EVENT_BYTES
from claimx_flow.stages.ingest import Ingester
from claimx_flow.stages.outputs import StageBatch
from tests.e2e.conftest import PipelineRun, header_map
from tests.security.conftest import counted, iter_samples
from tests.topic_config import set_topic_config

AT = "2024-03-01T10:00:00Z"
TEN_MB = 10 * 1024 * 1024


def event(
    event_type: str = "PROJECT_CREATED", project_id: object = "5000001", **extra: object
) -> bytes:
    return json.dumps(
        {"event_type": event_type, "project_id": project_id, "ingested_at": AT, **extra}
    ).encode()


def ten_mb_event() -> bytes:
    """A well-formed event carrying 10 MB of incompressible audit data."""
    padding = base64.b64encode(os.urandom(TEN_MB * 3 // 4)).decode()
    return event(project_id="5000009", raw_data={"blob": padding})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (case, message value, the reason the events DLQ must record)
UNREADABLE: list[tuple[str, bytes | None, str]] = [
    ("invalid JSON", b'{"event_type": "PROJECT_CREATED", ', "invalid JSON"),
    ("not an object", b'["PROJECT_CREATED", 5000001]', "not a JSON object (got array)"),
    ("empty value", None, "empty message (no value)"),
    ("wrong type", event(project_id=True), "bad type for field project_id"),
    ("wrong type (object id)", event(project_id={"id": 1}), "bad type for field project_id"),
    ("wrong type (time)", event(ingested_at=[2024, 3, 1]), "ingested_at"),
    (
        "missing fields",
        json.dumps({"eventType": "PROJECT_CREATED"}).encode(),
        "missing field project_id; missing field ingested_at",
    ),
    ("10 MB", b"", f"over the limit of {MAX_EVENT_BYTES}"),  # value filled in below
    ("deep nesting", nested(100_000), "nested too deeply"),
    (
        "deep nesting inside",
        event(raw_data=None)[:-1] + b', "x": ' + nested(100_000) + b"}",
        "nested too deeply",
    ),
    ("null byte", event()[:20] + b"\x00" + event()[20:], "invalid JSON"),
    ("escaped null byte in an id", event(project_id="50\u00000001"), "contains control"),
    ("invalid UTF-8", event()[:25] + b"\xff\xfe" + event()[25:], "invalid UTF-8 at byte 25"),
    ("lone surrogate", event(project_id="\ud800"), "unencodable"),
    ("number of 5000 digits", b'{"project_id": ' + b"9" * 5000 + b"}", "invalid JSON"),
    ("time beyond UTC", event(ingested_at="9999-12-31T23:59:59-12:00"), "out of range"),
    ("id of 1000 characters", event(project_id="9" * 1000), "longer than 256"),
]
UNREADABLE_IDS = [case for case, _, _ in UNREADABLE]


def _value(case: str, value: bytes | None) -> bytes | None:
    return ten_mb_event() if case == "10 MB" else value


def test_the_bad_cases_really_are_what_they_claim() -> None:
    # The corrupting slices above land where intended: the raw null byte inside a string.
    raw = dict((case, value) for case, value, _ in UNREADABLE)
    assert raw["null byte"] is not None and b"\x00" in raw["null byte"]
    assert len(ten_mb_event()) > TEN_MB


def one(ingest: Ingester, record: KafkaRecord) -> StageBatch:
    """What the stage makes of a batch of just ``record``."""
    return ingest.ingest(RecordBatch(f"{record.partition}-{record.topic}", [record]))


@pytest.mark.parametrize(("case", "value", "reason"), UNREADABLE, ids=UNREADABLE_IDS)
def test_an_unreadable_event_is_dead_lettered_with_its_reason_and_counted(
    case: str, value: bytes | None, reason: str
) -> None:
    settings = Settings()
    ingest = Ingester.from_settings(settings)
    value = _value(case, value)
    bad = KafkaRecord(settings.claimx_events_topic, 2, 41, 1_700_000_000_000, b"k", value)
    good = KafkaRecord(settings.claimx_events_topic, 2, 42, None, b"k", event())
    dlq = settings.claimx_events_dlq_topic

    with (
        counted("claimx_errors_total", stage="ingest", category="permanent") as errors,
        counted("claimx_dlq_messages_total", stage="ingest", topic=dlq) as dead,
        counted("claimx_events_ingested_total") as ingested,
    ):
        (routed,) = one(ingest, bad).records
        after = one(ingest, good)

    assert isinstance(routed, OutboundRecord)
    assert routed.topic == dlq
    assert routed.key == b"k"
    if value is not None and len(value) > settings.claimx_dlq_max_message_bytes:
        assert routed.value == value[: len(routed.value or b"")]  # stored truncated
    else:
        assert routed.value == value  # the original, unchanged
    info = FailureInfo.from_headers(routed.headers)
    assert reason in info.error_message
    assert (info.error_category, info.stage, info.attempt) == ("permanent", "ingest", 1)
    assert (info.original_topic, info.original_partition, info.original_offset) == (
        settings.claimx_events_topic,
        2,
        41,
    )
    assert len(dict(routed.headers)["claimx.error_message"]) <= 1000
    assert (errors.delta, dead.delta) == (1, 1)
    # The partition flows on: the next event becomes a task and a row.
    assert ingested.delta == 1
    assert [o.topic for o in after.records] == [settings.claimx_enrichment_pending_topic]
    assert after.tables[EVENTS.name].rows.num_rows == 1


READABLE: list[tuple[str, bytes]] = [
    ("unknown fields", event(colour="mauve", nested={"a": [1, 2]}, eventVersion=7)),
    ("unknown event type", event("PROJECT_TELEPORTED")),
    ("control characters in the event type", event("PROJECT\u0000CREATED\n")),
    (
        "camelCase and numeric ids",
        json.dumps(
            {"eventType": "PROJECT_CREATED", "projectId": 5000001, "ingestedAt": AT}
        ).encode(),
    ),
]


@pytest.mark.parametrize(("case", "value"), READABLE, ids=[c for c, _ in READABLE])
def test_a_readable_oddity_becomes_a_task_and_a_row(case: str, value: bytes) -> None:
    settings = Settings()
    with counted("claimx_events_ingested_total") as ingested:
        out = one(
            Ingester.from_settings(settings),
            KafkaRecord(settings.claimx_events_topic, 0, 7, None, b"k", value),
        )
    (task_record,) = out.records
    (row,) = out.tables[EVENTS.name].rows.to_pylist()
    assert task_record.topic == settings.claimx_enrichment_pending_topic
    task = EnrichmentTask.from_json(task_record.value)
    assert row["event_id"] == task.event_id == RawEvent.from_kafka(value).event_id
    assert ingested.delta == 1
    if case == "unknown fields":  # kept for audit, never dropped
        assert RawEvent.from_kafka(value).raw_data == json.loads(value)


def test_a_duplicate_event_has_the_same_identity() -> None:
    ingest = Ingester.from_settings(Settings())
    first, second = (
        one(ingest, KafkaRecord("raw", 0, offset, None, b"k", event())) for offset in (1, 2)
    )
    assert first.records == second.records  # the same task: keyed the same, deduplicated
    assert first.tables[EVENTS.name].rows.column("event_id") == second.tables[
        EVENTS.name
    ].rows.column("event_id")


# The whole thing, through real stage processes --------------------------------------------


def _produce(settings: Settings, messages: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "message.max.bytes": 2 * TEN_MB,
            "enable.idempotence": True,
        }
    )
    for key, value in messages:
        producer.produce(settings.claimx_events_topic, key=key, value=value, partition=0)
        producer.flush(30)  # one at a time: the order on the partition is the order here
    assert producer.flush(30) == 0


def _metrics(run: PipelineRun, stage: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    port = run.pipeline.health_ports[stage][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(name, frozenset(labels.items())): value for name, labels, value in iter_samples(text)}


def _sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_every_hostile_event_through_real_stages_lands_where_it_should(
    pipeline_run: PipelineRun, sim: RunningSimulator
) -> None:
    run, settings = pipeline_run, pipeline_run.settings
    # The raw topic takes the 10 MB event; the DLQ keeps the broker's default limit, so its
    # copy must be stored truncated rather than refused (which would stop the stage).
    set_topic_config(settings, settings.claimx_events_topic, max_message_bytes=str(2 * TEN_MB))
    sim.set_faults(not_found_projects=["5000666"])
    unreadable = [(case, _value(case, value), reason) for case, value, reason in UNREADABLE]
    readable = [
        ("unknown fields", event(colour="mauve", project_id="5000002")),
        ("unknown event type", event("PROJECT_TELEPORTED", project_id="5000003")),
        ("duplicate", event(project_id="5000004")),
        ("duplicate", event(project_id="5000004")),
        ("unknown project", event(project_id="5000666")),
        (
            "media not in the project",
            event("PROJECT_FILE_ADDED", project_id="5000005", mediaId="77777777777"),
        ),
    ]
    last_good = event(project_id="5000008")
    # Bad and odd events interleaved on one partition, a good one after all of them.
    stream = [value for _, value, _ in unreadable] + [value for _, value in readable]
    _produce(settings, [(b"same-key", value) for value in stream] + [(b"same-key", last_good)])

    run.pipeline.start(["ingest", "enrich"])
    last_id = RawEvent.from_kafka(last_good).event_id
    run.wait_for(
        lambda: (
            any(r["project_id"] == "5000008" for r in run.table("claimx_projects"))
            and len(run.topic_messages(settings.claimx_enrichment_dlq_topic)) >= 3
        ),
        timeout_s=90,
        what="the last good event enriched and three enrichment failures",
    )

    # Unreadable: in the events DLQ, unchanged, with the reason and where it was read.
    events_dlq = run.topic_messages(settings.claimx_events_dlq_topic)
    by_offset = {int(header_map(m)["claimx.original_offset"]): m for m in events_dlq}
    assert sorted(by_offset) == list(range(len(unreadable)))
    for offset, (case, value, reason) in enumerate(unreadable):
        message = by_offset[offset]
        headers = header_map(message)
        if value is not None and len(value) > settings.claimx_dlq_max_message_bytes:
            assert value.startswith(message.value()) and headers["claimx.truncated"] == "true"
            assert headers["claimx.original_size"] == str(len(value))
            assert headers["claimx.original_sha256"] == hashlib.sha256(value).hexdigest()
        else:
            assert message.value() == value, case
        assert reason in headers["claimx.error_message"], (case, headers["claimx.error_message"])
        assert headers["claimx.error_category"] == "permanent"
        assert headers["claimx.original_topic"] == settings.claimx_events_topic

    # Readable: one row per distinct event (the duplicate once), the last good one included.
    rows = run.table("claimx_events")
    assert Counter(r["project_id"] for r in rows) == {
        "5000002": 1,
        "5000003": 1,
        "5000004": 1,
        "5000666": 1,
        "5000005": 1,
        "5000008": 1,
    }
    assert last_id in {r["event_id"] for r in rows}

    # What enrichment cannot do is in its DLQ with the reason.
    reasons = {
        header_map(m)["claimx.project_id"]: header_map(m)["claimx.error_message"]
        for m in run.topic_messages(settings.claimx_enrichment_dlq_topic)
    }
    assert reasons.keys() == {"5000003", "5000666", "5000005"}
    assert reasons["5000003"].startswith("UNKNOWN_EVENT_TYPE")
    assert "HTTP 404" in reasons["5000666"]
    assert reasons["5000005"].startswith("MEDIA_NOT_FOUND")

    # And it was counted, by the stage processes themselves.
    ingest = _metrics(run, "ingest")
    assert _sample(ingest, "claimx_errors_total", stage="ingest", category="permanent") == len(
        unreadable
    )
    assert _sample(
        ingest, "claimx_dlq_messages_total", stage="ingest", topic=settings.claimx_events_dlq_topic
    ) == len(unreadable)
    assert _sample(ingest, "claimx_events_ingested_total") == len(readable) + 1
    enrich = _metrics(run, "enrich")
    assert (
        _sample(
            enrich,
            "claimx_dlq_messages_total",
            stage="enrich",
            topic=settings.claimx_enrichment_dlq_topic,
        )
        == 3
    )
    assert (
        _sample(
            enrich,
            "claimx_api_errors_total",
            stage="enrich",
            endpoint="project",
            category="permanent",
        )
        >= 1
    )
