"""Property fuzzing of what reads untrusted bytes: the event parser, the failure-header codec
and API payloads turned into table rows. (The file-name sanitiser is fuzzed in test_paths.)

The property is the same each time: any input either becomes a valid value or a classified
refusal (a DLQ record with a reason), never an exception that would stop a stage. Examples
per test: ``CLAIMX_FUZZ_EXAMPLES`` (300 in CI).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.delta.tables import (
    CONTACTS,
    EVENTS,
    EXTERNAL_LINKS,
    MEDIA,
    PROJECTS,
    TASK_TEMPLATES,
    TASKS,
    VIDEO_COLLAB,
)
from claimx_flow.enrichment import rows
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.models import EnrichmentTask, FailureInfo, MalformedHeadersError, MessageOrigin
from claimx_flow.models.failure import HEADER_PREFIX
from claimx_flow.routing.failures import FailureRouter, previous_failure
from claimx_flow.stages.ingest import Ingester
from tests.security.conftest import fuzz

SETTINGS = Settings()
INGEST = Ingester.from_settings(SETTINGS)

# Values chosen to break things: edges of the calendar and of integers, surrogates, nulls.
NASTY = st.sampled_from(
    [
        "2024-01-01T00:00:00Z",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "\ud800",
        "\x00",
        "../..",
        "1" * 300,
        "PROJECT_FILE_ADDED",
        "",
        " ",
        2**63,
        -(2**63) - 1,
        1e308,
        -1e20,
        253402300800000,
        True,
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec=None), max_size=20)
    | NASTY
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENT_KEYS = st.sampled_from(
    [
        "event_type",
        "eventType",
        "project_id",
        "projectId",
        "ingested_at",
        "ingestedAt",
        "IngestionTime",
        "media_id",
        "mediaId",
        "event_id",
        "eventId",
        "task_assignment_id",
        "video_collaboration_id",
        "master_file_name",
        "raw_data",
        "colour",
    ]
)
event_documents = st.dictionaries(EVENT_KEYS, json_values, max_size=10)
nearly_valid = st.fixed_dictionaries(
    {"event_type": st.text(max_size=30) | NASTY, "project_id": scalars, "ingested_at": scalars},
    optional={"media_id": scalars, "event_id": scalars, "master_file_name": scalars},
)


A_VALID_EVENT = {"event_type": "X", "project_id": "1", "ingested_at": "2024-01-01T00:00:00Z"}


def _encode(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")


message_values = (
    st.none()
    | st.binary(max_size=300)
    | event_documents.map(_encode)
    | nearly_valid.map(_encode)
    | json_values.map(_encode)
)


@fuzz
@given(value=message_values)
@example(value=b'{"project_id": ' + b"9" * 5000 + b"}")
@example(value=b"[" * 100_000)
@example(value=b'{"event_type": "0", "project_id": 1e308, "ingested_at": 0}')  # 309-digit id
@example(
    value=_encode(
        {
            "event_type": "X",
            "project_id": "1",
            "event_id": "e",
            "media_id": "\ud800",
            "ingested_at": "2024-01-01T00:00:00Z",
        }
    )
)
@example(
    value=_encode(
        {"event_type": "X", "project_id": "1", "ingested_at": "9999-12-31T23:59:59-12:00"}
    )
)
def test_fuzz_the_event_parser_never_stops_the_ingest_stage(value: bytes | None) -> None:
    record = KafkaRecord(SETTINGS.claimx_events_topic, 0, 1, None, b"k", value)
    out = INGEST.ingest(RecordBatch("0-raw", [record]))
    if out.records[0].topic == SETTINGS.claimx_events_dlq_topic:
        (dead,) = out.records
        assert dead.value == value and not out.tables
        info = FailureInfo.from_headers(dead.headers)
        assert info.error_category is ErrorCategory.PERMANENT and info.error_message
        return
    # Accepted: everything it produced can be written and read back.
    (task_record,) = out.records
    task = EnrichmentTask.from_json(task_record.value)
    assert task_record.key == task.project_id.encode()
    rows = out.tables[EVENTS.name]
    assert rows.sources == [record] and rows.rows.schema == EVENTS.schema


# The failure-header codec ------------------------------------------------------------------

FIELDS = sorted(FailureInfo.model_fields)


def _raw(text: str) -> bytes:
    """Text as bytes, lone surrogates included (invalid UTF-8 is a case to test, too)."""
    return text.encode("utf-8", "surrogatepass")


header_names = st.sampled_from([HEADER_PREFIX + f for f in FIELDS]) | st.text(max_size=20)
header_values = (
    st.none()
    | st.binary(max_size=40)
    | st.text(st.characters(codec=None), max_size=40).map(
        lambda t: t.encode("utf-8", "surrogatepass")
    )
    | NASTY.map(lambda v: str(v).encode("utf-8", "surrogatepass"))
)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=24)


def _valid_headers() -> list[tuple[str, bytes]]:
    info = FailureInfo.from_reason(
        "x",
        error_class="E",
        origin=MessageOrigin("t", 0, 1),
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
    )
    return info.to_headers()


@fuzz
@given(headers=header_lists, keep=st.lists(st.integers(0, 15), max_size=16))
def test_fuzz_failure_headers_decode_or_are_named_as_malformed(
    headers: list[tuple[str, bytes | None]], keep: list[int]
) -> None:
    valid = _valid_headers()
    mixed = [valid[i] for i in keep if i < len(valid)] + headers  # near-valid envelopes too
    for candidate in (headers, mixed):
        try:
            info = FailureInfo.maybe_from_headers(candidate)
        except MalformedHeadersError as exc:
            assert exc.reason
            continue
        if info is not None:
            assert FailureInfo.from_headers(info.to_headers()) == info


@fuzz
@given(headers=header_lists, value=st.binary(max_size=50) | st.none())
def test_fuzz_routing_a_failure_never_raises_whatever_headers_it_carries(
    headers: list[tuple[str, bytes | None]], value: bytes | None
) -> None:
    """A retried message's headers are input too: unreadable ones are ignored, and the record
    that leaves carries exactly one readable envelope."""
    record = KafkaRecord("t", 0, 5, None, b"k", value, [(n, v or b"") for n, v in headers])
    previous_failure(record)
    router = FailureRouter("enrich", "dlq")
    routed = router.route(record, reason="boom", error_class="E", category=ErrorCategory.PERMANENT)
    info = FailureInfo.from_headers(routed.headers)
    assert info.error_message == "boom" and routed.value == value
    ours = [name for name, _ in routed.headers if name[len(HEADER_PREFIX) :] in FIELDS]
    assert len(ours) == len(set(ours))


# API payloads into table rows --------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PAYLOAD_KEYS = st.sampled_from(
    [
        "projectId",
        "yearBuilt",
        "squareFootage",
        "createdDate",
        "dateOfLoss",
        "status",
        "mediaID",
        "mediaId",
        "mediaName",
        "latitude",
        "takenDate",
        "expiresAt",
        "fullDownloadLink",
        "assignmentId",
        "taskId",
        "dateAssigned",
        "customTask",
        "externalLinkData",
        "stpEnabled",
        "linkId",
        "claimId",
        "numberOfVideos",
        "totalTimeSeconds",
        "customerInformation",
        "address",
        "emails",
        "teamMembers",
        "primaryContact",
        "userName",
        "modifiedDate",
        "videoCollaborationId",
        "id",
    ]
)
payloads = st.dictionaries(PAYLOAD_KEYS, json_values, max_size=12)
SPECS = {
    spec.name: spec
    for spec in (PROJECTS, CONTACTS, MEDIA, TASKS, TASK_TEMPLATES, EXTERNAL_LINKS, VIDEO_COLLAB)
}


def _rows(kind: str, payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if kind == "project":
        response = {"project": payload, "teamMembers": [payload], "companyName": payload.get("id")}
        return [(PROJECTS.name, rows.project_row(response, "e", NOW))] + [
            (CONTACTS.name, c) for c in rows.contact_rows(response, "1", "e", NOW)
        ]
    if kind == "media":
        return [(MEDIA.name, rows.media_row(payload, "1", "e", NOW))]
    if kind == "task":
        return rows.task_rows(payload, "1", "e", NOW)
    return [(VIDEO_COLLAB.name, rows.video_row(payload, "1", "e", NOW))]


@fuzz
@given(kind=st.sampled_from(["project", "media", "task", "video"]), payload=payloads)
@example(kind="project", payload={"projectId": 1, "yearBuilt": 2**70})
@example(kind="project", payload={"projectId": 1, "status": "\ud800"})
@example(kind="media", payload={"mediaId": 5})
@example(kind="project", payload={"createdDate": 6.77680361916768e19})  # OSError, not Overflow
def test_fuzz_api_payloads_become_storable_rows_or_a_payload_error(
    kind: str, payload: dict[str, Any]
) -> None:
    """A value Arrow cannot hold must fail here, for one event, not in the Delta sink, where it
    would fail the whole batch's write on every replay."""
    try:
        produced = _rows(kind, payload)
    except rows.PayloadError:
        return
    for table, row in produced:
        table_rows = SPECS[table].to_arrow([row])
        assert isinstance(table_rows, pa.Table) and table_rows.num_rows == 1
