"""Raw events and stage messages: parsing, identity, and exact JSON round trips."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from claimx_flow.models import (
    CachedDownload,
    CachedFile,
    DownloadTask,
    EnrichmentTask,
    MalformedMessageError,
    RawEvent,
    StageMessage,
    UploadResult,
    derive_event_id,
)
from claimx_flow.models.event_fields import fields_of
from claimx_flow.models.types import as_utc, utc_iso, with_utc

# Strategies ---------------------------------------------------------------------------------

ids = st.one_of(
    st.integers(min_value=0, max_value=10**15).map(str),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20),
)
texts = st.text(min_size=1, max_size=40)
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
zoned = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
"""Instants at any offset, which a message holds as UTC."""
sha256s = st.text("0123456789abcdef", min_size=64, max_size=64)
counts = st.integers(min_value=0, max_value=10**9)

enrichment_tasks = st.builds(
    EnrichmentTask,
    event_id=ids,
    event_type=texts,
    project_id=ids,
    media_id=st.none() | ids,
    task_assignment_id=st.none() | ids,
    video_collaboration_id=st.none() | ids,
    master_file_name=st.none() | ids,
    ingested_at=instants,
    retry_count=counts,
)
download_fields: dict[str, Any] = {
    "media_id": ids,
    "project_id": ids,
    "download_url": texts,
    "file_name": st.text(max_size=40),
    "file_type": st.text(max_size=8),
    "expires_at": st.none() | instants,
    "source_event_id": ids,
    "retry_count": counts,
    "refresh_count": counts,
}
download_tasks = st.builds(DownloadTask, **download_fields)
cached_files = st.builds(
    CachedFile,
    local_path=texts,
    size=counts,
    sha256=sha256s,
    content_type=st.text(max_size=30),
    downloaded_at=instants,
)
cached_downloads = st.builds(
    lambda task, file: CachedDownload.from_task(task, **file._asdict()),
    download_tasks,
    cached_files,
)
upload_results = st.builds(
    lambda failed, error, **fields: UploadResult(
        status="failed" if failed else "completed", error=error if failed else None, **fields
    ),
    failed=st.booleans(),
    error=st.text(max_size=100),
    media_id=ids,
    project_id=ids,
    onelake_path=texts,
    bytes=counts,
    sha256=sha256s,
    source_event_id=ids,
    finished_at=instants,
)
messages = st.one_of(enrichment_tasks, download_tasks, cached_downloads, upload_results)

INGESTED = "2024-01-04T12:34:56.123456+00:00"
SNAKE_EVENT: dict[str, Any] = {
    "event_type": "PROJECT_FILE_ADDED",
    "project_id": "5500123",
    "ingested_at": INGESTED,
    "media_id": "97138881",
    "task_assignment_id": "42",
    "video_collaboration_id": "7",
    "master_file_name": "MFN-1",
}
CAMEL_EVENT: dict[str, Any] = {
    "eventType": "PROJECT_FILE_ADDED",
    "projectId": 5500123,
    "IngestionTime": "2024-01-04T12:34:56.1234567Z",
    "mediaId": 97138881,
    "taskAssignmentId": 42.0,
    "videoCollaborationId": 7,
    "masterFileName": "MFN-1",
}


def encode(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")


# Raw events ---------------------------------------------------------------------------------


def test_camel_case_numbers_and_kusto_time_read_like_snake_case_strings() -> None:
    snake = RawEvent.from_kafka(encode(SNAKE_EVENT))
    camel = RawEvent.from_kafka(encode(CAMEL_EVENT))
    assert snake.model_dump(exclude={"raw_data"}) == camel.model_dump(exclude={"raw_data"})
    assert camel.project_id == "5500123"
    assert camel.media_id == "97138881"
    assert camel.task_assignment_id == "42"
    assert camel.ingested_at == datetime(2024, 1, 4, 12, 34, 56, 123456, tzinfo=UTC)


def test_event_id_is_the_documented_hash_of_the_identity() -> None:
    event = RawEvent.from_kafka(encode(SNAKE_EVENT))
    expected = hashlib.sha256(
        f"5500123|PROJECT_FILE_ADDED|{INGESTED}|97138881|42|7|MFN-1".encode()
    ).hexdigest()
    assert event.event_id == expected


def test_absent_parts_hash_as_empty_strings() -> None:
    event = RawEvent.from_kafka(
        encode({"eventType": "PROJECT_CREATED", "projectId": 1, "ingestedAt": INGESTED})
    )
    assert (
        event.event_id == hashlib.sha256(f"1|PROJECT_CREATED|{INGESTED}||||".encode()).hexdigest()
    )


def test_event_id_from_the_message_wins_and_is_normalised() -> None:
    assert RawEvent.from_kafka(encode({**SNAKE_EVENT, "event_id": "evt_001"})).event_id == "evt_001"
    assert RawEvent.from_kafka(encode({**CAMEL_EVENT, "eventId": 991})).event_id == "991"


def test_naive_time_is_utc_and_offsets_convert() -> None:
    naive = RawEvent.from_kafka(encode({**SNAKE_EVENT, "ingested_at": "2024-01-04T12:34:56"}))
    shifted = RawEvent.from_kafka(
        encode({**SNAKE_EVENT, "ingested_at": "2024-01-04T14:34:56+02:00"})
    )
    assert naive.ingested_at == datetime(2024, 1, 4, 12, 34, 56, tzinfo=UTC)
    assert naive.ingested_at.utcoffset() == timedelta(0)
    assert shifted.ingested_at.tzinfo is UTC
    assert naive.event_id == shifted.event_id


def test_unknown_fields_and_event_types_are_kept_not_rejected() -> None:
    source = {**SNAKE_EVENT, "event_type": "SOMETHING_NEW", "extra": {"x": [1, 2]}}
    event = RawEvent.from_kafka(encode(source))
    assert event.event_type == "SOMETHING_NEW"
    assert event.raw_data == source


def test_raw_data_is_the_whole_source_even_when_it_has_its_own_raw_data() -> None:
    source = {**SNAKE_EVENT, "raw_data": {"kusto": "row"}}
    assert RawEvent.from_kafka(encode(source)).raw_data == source


@given(
    ingested=instants,
    offset=offsets,
    parts=st.fixed_dictionaries(
        {"media_id": st.none() | ids, "task_assignment_id": st.none() | ids}
    ),
    project=st.integers(min_value=0, max_value=10**12),
    camel=st.booleans(),
    numeric=st.booleans(),
)
def test_event_id_is_stable_across_spellings(
    ingested: datetime,
    offset: timezone,
    parts: dict[str, str | None],
    project: int,
    camel: bool,
    numeric: bool,
) -> None:
    snake = {
        "event_type": "PROJECT_FILE_ADDED",
        "project_id": str(project),
        "ingested_at": ingested.isoformat(),
        **{k: v for k, v in parts.items() if v is not None},
    }
    other = {
        ("eventType" if camel else "event_type"): "PROJECT_FILE_ADDED",
        ("projectId" if camel else "project_id"): project if numeric else str(project),
        ("IngestionTime" if camel else "ingested_at"): ingested.astimezone(offset).isoformat(),
        **{
            (("mediaId" if k == "media_id" else "taskAssignmentId") if camel else k): v
            for k, v in parts.items()
            if v is not None
        },
    }
    first = RawEvent.from_kafka(encode(snake))
    assert RawEvent.from_kafka(encode(snake)).event_id == first.event_id  # never the clock
    assert RawEvent.from_kafka(encode(other)).event_id == first.event_id


IDENTITY_VALUES: dict[str, Any] = {
    "project_id": "1",
    "event_type": "PROJECT_CREATED",
    "ingested_at": datetime(2024, 1, 1, tzinfo=UTC),
    "media_id": None,
    "task_assignment_id": None,
    "video_collaboration_id": None,
    "master_file_name": None,
}


@given(
    field=st.sampled_from(sorted(IDENTITY_VALUES)),
    value=ids,
    shift=st.integers(min_value=1, max_value=10**9),
)
def test_event_id_changes_when_any_identifying_field_changes(
    field: str, value: str, shift: int
) -> None:
    changed = dict(IDENTITY_VALUES)
    if field == "ingested_at":
        changed[field] = IDENTITY_VALUES[field] + timedelta(microseconds=shift)
    elif value == IDENTITY_VALUES[field]:
        changed[field] = value + "x"
    else:
        changed[field] = value
    assert derive_event_id(changed) != derive_event_id(IDENTITY_VALUES)


def test_a_part_moving_between_fields_changes_the_id() -> None:
    as_media = {**IDENTITY_VALUES, "media_id": "5"}
    as_task = {**IDENTITY_VALUES, "task_assignment_id": "5"}
    assert derive_event_id(as_media) != derive_event_id(as_task)


VALID = {"event_type": "PROJECT_CREATED", "project_id": "1", "ingested_at": INGESTED}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty message"),
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b"{not json", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[1, 2]", "not a JSON object (got array)"),
        (b'"text"', "not a JSON object (got string)"),
        (b"null", "not a JSON object (got null)"),
        (b"[" * 100_000, "invalid JSON"),
        (
            encode({k: v for k, v in VALID.items() if k != "ingested_at"}),
            "missing field ingested_at",
        ),
        (encode({k: v for k, v in VALID.items() if k != "project_id"}), "missing field project_id"),
        (encode({k: v for k, v in VALID.items() if k != "event_type"}), "missing field event_type"),
        (encode({**VALID, "ingested_at": None}), "field ingested_at"),
        (encode({**VALID, "ingested_at": "yesterday"}), "bad value for field ingested_at"),
        (encode({**VALID, "project_id": True}), "bad type for field project_id"),
        (encode({**VALID, "projectId": True, "project_id": None}), "field project_id"),
        (encode({**VALID, "project_id": 1.5}), "bad value for field project_id"),
        (encode({**VALID, "project_id": ""}), "bad value for field project_id"),
        (encode({**VALID, "project_id": "  "}), "bad value for field project_id"),
        (encode({**VALID, "project_id": [1]}), "bad type for field project_id"),
        (encode({**VALID, "media_id": {"id": 1}}), "bad type for field media_id"),
        (encode({**VALID, "event_type": 7}), "bad type for field event_type"),
        (encode({**VALID, "event_type": ""}), "bad value for field event_type"),
        (encode({**VALID, "event_id": ""}), "bad value for field event_id"),
    ],
)
def test_malformed_events_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        RawEvent.from_kafka(value)
    assert reason in caught.value.reason
    assert len(caught.value.reason) <= 300


def test_camel_case_problems_are_reported_by_field_name() -> None:
    with pytest.raises(MalformedMessageError) as caught:
        RawEvent.from_kafka(encode({**CAMEL_EVENT, "projectId": False}))
    assert caught.value.reason.startswith("bad type for field project_id:")


# Stage messages -----------------------------------------------------------------------------


@given(messages)
def test_messages_round_trip_through_json_exactly(message: StageMessage) -> None:
    value = message.to_json()
    again = type(message).from_json(value)
    assert again == message
    assert again.to_json() == value


@given(messages)
def test_to_json_is_model_dump_json_as_utf8(message: StageMessage) -> None:
    assert message.to_json() == message.model_dump_json().encode("utf-8")


@given(messages)
def test_datetimes_are_written_with_their_utc_offset(message: StageMessage) -> None:
    document = json.loads(message.to_json())
    for name, value in message:
        if isinstance(value, datetime):
            assert document[name].endswith("+00:00")
            assert datetime.fromisoformat(document[name]) == value


@given(enrichment_tasks, cached_downloads, upload_results)
def test_kafka_keys_follow_the_topic_table(
    task: EnrichmentTask, cached: CachedDownload, result: UploadResult
) -> None:
    assert task.kafka_key == task.project_id.encode()
    assert cached.kafka_key == cached.media_id.encode()
    assert DownloadTask.from_json(cached.to_json()).kafka_key == cached.media_id.encode()
    assert result.kafka_key == result.media_id.encode()


def test_enrichment_task_from_event_keeps_identity_and_starts_at_zero() -> None:
    event = RawEvent.from_kafka(encode(CAMEL_EVENT))
    task = EnrichmentTask.from_event(event)
    assert task.event_id == event.event_id
    assert task.media_id == "97138881"
    assert task.ingested_at == event.ingested_at
    assert task.retry_count == 0


def test_download_to_cached_and_back() -> None:
    task = DownloadTask(
        media_id=5,
        project_id="1",
        download_url="https://bucket.s3.amazonaws.com/a.jpg?X-Amz-Signature=abc",
        file_name="a.jpg",
        file_type="jpg",
        source_event_id="e1",
    )
    at = datetime(2024, 1, 1, tzinfo=UTC)
    cached = CachedDownload.from_task(
        task,
        local_path="/c/5",
        size=10,
        sha256="0" * 64,
        content_type="image/jpeg",
        downloaded_at=at,
    )
    assert DownloadTask.from_json(cached.to_json()) == task  # a retried upload, downloaded again
    assert cached.downloaded_at == at
    assert "X-Amz-Signature" not in repr(task)
    assert "X-Amz-Signature" not in repr(cached)
    done = UploadResult.completed(cached, "claimx/1/media/5_a.jpg", finished_at=at)
    assert (done.status, done.error, done.bytes, done.kafka_key) == ("completed", None, 10, b"5")
    failed = UploadResult.failed(cached, "p", RuntimeError("denied: password=hunter2"))
    assert failed.status == "failed"
    assert failed.error == "denied: password=***"


@given(
    st.builds(
        DownloadTask,
        **{**download_fields, "expires_at": st.none() | instants | zoned},
    ),
    cached_files,
)
def test_a_cached_message_is_the_bytes_the_model_writes(
    task: DownloadTask, file: CachedFile
) -> None:
    """The download writes its cached messages without the model: the same bytes, whatever the
    task's text, counts and expiry (any offset, held as UTC), for any file facts the model
    would accept as they are (``downloaded_at`` in UTC, as the download writes it)."""
    expected = CachedDownload.from_task(task, **file._asdict()).to_json()
    assert file.message(task) == expected
    assert DownloadTask.from_json(file.message(task)) == task


def test_upload_result_error_is_set_exactly_when_failed() -> None:
    fields: dict[str, Any] = {
        "media_id": "5",
        "project_id": "1",
        "onelake_path": "p",
        "bytes": 1,
        "sha256": "0" * 64,
        "source_event_id": "e",
        "finished_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    with pytest.raises(ValidationError):
        UploadResult(status="failed", **fields)
    with pytest.raises(ValidationError):
        UploadResult(status="completed", error="x", **fields)


@given(enrichment_tasks)
def test_messages_are_frozen_and_copied(task: EnrichmentTask) -> None:
    with pytest.raises(ValidationError):
        task.retry_count = 1  # type: ignore[misc]
    retried = task.model_copy(update={"retry_count": task.retry_count + 1})
    assert retried.retry_count == task.retry_count + 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff", "invalid UTF-8"),
        (b"[]", "not a JSON object"),
        (b"{}", "missing field event_id"),
        (
            encode(
                {
                    "event_id": "e",
                    "event_type": "X",
                    "project_id": "1",
                    "ingested_at": INGESTED,
                    "retry_count": -1,
                }
            ),
            "bad value for field retry_count",
        ),
    ],
)
def test_malformed_stage_messages_say_why(value: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        EnrichmentTask.from_json(value)
    assert reason in caught.value.reason


def test_newer_fields_from_a_newer_producer_are_tolerated() -> None:
    task = EnrichmentTask.from_json(
        encode(
            {
                "event_id": "e",
                "event_type": "X",
                "project_id": "1",
                "ingested_at": INGESTED,
                "priority": "high",
            }
        )
    )
    assert task.event_id == "e"


# The ingest fast path: a task written straight from its event --------------------------------

raw_events = st.fixed_dictionaries(
    {
        "event_type": texts.filter(str.strip),
        "project_id": ids | st.integers(min_value=0, max_value=10**15),
        "ingested_at": st.tuples(instants, offsets).map(lambda p: p[0].astimezone(p[1])),
    },
    optional={
        "event_id": ids,
        "media_id": ids,
        "task_assignment_id": ids,
        "video_collaboration_id": ids,
        "master_file_name": ids,
        "extra": texts,
    },
).map(lambda d: {**d, "ingested_at": d["ingested_at"].isoformat()})


@given(raw_events)
def test_message_from_fields_is_the_task_from_event_byte_for_byte(source: dict[str, Any]) -> None:
    event = RawEvent.from_kafka(encode(source))
    task = EnrichmentTask.from_event(event)
    assert EnrichmentTask.message_from_fields(fields_of(event)) == (task.kafka_key, task.to_json())


def test_message_from_fields_writes_every_task_field_in_order() -> None:
    """A field added to the task must be added to its fast path too, or this fails."""
    from claimx_flow.models.messages import _TaskWire

    assert list(_TaskWire.__annotations__) == list(EnrichmentTask.model_fields)


def test_raw_data_is_the_decoded_message_itself() -> None:
    value = encode({**SNAKE_EVENT, "nested": {"a": [1, 2]}})
    assert RawEvent.from_kafka(value).raw_data == json.loads(value)


# Reading a stage message: pydantic-core's one pass agrees with json + model_validate --------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", " 42 ", "42", "4.0", "2026-11-01T00:00:00Z", "2026-11-01", "0" * 64]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def message_documents(draw: st.DrawFn) -> tuple[type[StageMessage], bytes]:
    """A message of each kind, valid or nearly so: some fields dropped, some replaced by any
    JSON value, unknown fields added, written with or without NaN allowed."""
    message = draw(messages)
    document = json.loads(message.to_json())
    for name in list(document):
        change = draw(st.sampled_from(["keep", "keep", "keep", "drop", "replace"]))
        if change == "drop":
            del document[name]
        elif change == "replace":
            document[name] = draw(json_values)
    document.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return type(message), json.dumps(document, allow_nan=True).encode("utf-8")


def _read_slowly(kind: type[StageMessage], raw: bytes) -> StageMessage | str:
    from claimx_flow.models.parsing import load_json_object, reason_from

    try:
        return kind.model_validate(load_json_object(raw))
    except MalformedMessageError as exc:
        return exc.reason
    except ValidationError as exc:
        return reason_from(exc, kind)


@given(message_documents())
def test_a_message_reads_the_same_by_either_parser(case: tuple[type[StageMessage], bytes]) -> None:
    kind, raw = case
    try:
        read: StageMessage | str = kind.from_json(raw)
    except MalformedMessageError as exc:
        read = exc.reason
    assert read == _read_slowly(kind, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"a","event_type":"X","project_id":"1","ingested_at":"2026-11-01T00:00:00Z",'
        b'"x":NaN}',
        b'{"event_id":"a","event_id":"b","event_type":"X","project_id":"1",'
        b'"ingested_at":"2026-11-01T00:00:00Z"}',
        b'{"event_id":"a","event_type":"X","project_id":"1","ingested_at":"2026-11-01T00:00:00Z",'
        b'"retry_count":1' + b"1" * 5000 + b"}",
        b'{"event_id":"e\\ud800","event_type":"X","project_id":"1",'
        b'"ingested_at":"2026-11-01T00:00:00Z"}',
        b'\xef\xbb\xbf{"event_id":"a","event_type":"X","project_id":"1",'
        b'"ingested_at":"2026-11-01T00:00:00Z"}',
        b'{"event_id":"a","event_type":"X","project_id":"1","ingested_at":"2026-11-01T00:00:00Z",'
        b'"deep":' + b"[" * 600 + b"]" * 600 + b"}",
    ],
    ids=["nan", "duplicate-key", "huge-number", "lone-surrogate", "bom", "deep"],
)
def test_what_json_and_pydantic_core_disagree_on_reads_as_json_reads_it(raw: bytes) -> None:
    try:
        read: StageMessage | str = EnrichmentTask.from_json(raw)
    except MalformedMessageError as exc:
        read = exc.reason
    assert read == _read_slowly(EnrichmentTask, raw)


def _reason(raw: bytes, frames: int = 0) -> str:
    """How ``load_json_object`` refuses ``raw`` (or "read"), called ``frames`` frames deeper."""
    from claimx_flow.models.parsing import load_json_object

    if frames:
        return _reason(raw, frames - 1)
    try:
        load_json_object(raw)
    except MalformedMessageError as exc:
        return exc.reason
    return "read"


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 650 + b"]" * 650,
        b"[" * 700 + b"x",
        b"[" * 701 + b"]" * 701,
        b"[" * 994 + b"x",  # found by hypothesis: refused two ways by two call paths
        b'{"a": "' + b"[" * 5000 + b'", "b": ' + b"{}" * 5000 + b"}",
    ],
    ids=["650", "700-truncated", "701", "994-truncated", "brackets-in-a-string"],
)
def test_a_deep_document_gets_one_reason_whatever_the_call_path(raw: bytes) -> None:
    """``json`` stops at the interpreter's recursion limit, which counts the caller's frames:
    the reason a message is refused must not depend on how deep the reader was called."""
    assert _reason(raw) == _reason(raw, 150)
    assert ("nested too deeply" in _reason(raw)) == (raw.count(b"[") > 700 and b'"' not in raw)


def test_no_depth_near_the_recursion_limit_reads_two_ways() -> None:
    """Wherever the recursion limit falls for this caller, a few frames more or less change no
    reason, at any depth up to past it."""
    for depth in range(600, 1100, 7):
        raw = b"[" * depth + b"x"
        assert _reason(raw) == _reason(raw, 5), depth


def _as_utc_by_replace(value: datetime) -> datetime:
    """``as_utc`` as it was written with ``replace``, before the constructor made it cheaper."""
    if value.tzinfo is None or value.tzinfo is UTC:
        return value if value.tzinfo is UTC else value.replace(tzinfo=UTC)
    if not value.utcoffset():
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _pydantic_zone(minutes: int) -> Any:
    """The zone pydantic-core gives an instant it reads from text (its own ``TzInfo``)."""
    sign = "-" if minutes < 0 else "+"
    text = f'"2026-01-01T00:00:00{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"'
    return TypeAdapter(datetime).validate_json(text).tzinfo


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(
        st.none(),
        st.just(UTC),
        offsets,
        st.integers(min_value=-23 * 60, max_value=23 * 60).map(_pydantic_zone),
        st.sampled_from(
            [_pydantic_zone(0), timezone(timedelta(0), "Z"), ZoneInfo("Europe/London")]
        ),
    ),
    st.sampled_from([0, 1]),
)
def test_an_instant_reads_as_utc_as_replace_read_it(wall: datetime, zone: Any, fold: int) -> None:
    """The constructor ``as_utc`` and ``with_utc`` use gives what ``replace(tzinfo=UTC)`` gave:
    the same instant, the same fields and fold, the UTC zone itself."""
    value = wall.replace(tzinfo=zone, fold=fold)
    expected = _as_utc_by_replace(value)
    got = as_utc(value)
    assert got.tzinfo is UTC
    assert (got, got.fold, got.isoformat()) == (expected, expected.fold, expected.isoformat())
    relabelled = with_utc(value)
    assert relabelled.tzinfo is UTC
    assert (relabelled, relabelled.fold) == (value.replace(tzinfo=UTC), fold)


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.one_of(st.none(), st.just(UTC), offsets),
    st.sampled_from([0, 1]),
)
def test_an_instant_is_written_as_isoformat_writes_it(wall: datetime, zone: Any, fold: int) -> None:
    value = wall.replace(tzinfo=zone, fold=fold)
    assert utc_iso(value) == value.isoformat()


class _Moment(datetime):
    """A datetime subclass, as a library may hand one over."""


def test_a_subclass_keeps_its_class_when_relabelled() -> None:
    naive = _Moment(2024, 1, 4, 12, 34, 56)
    assert type(with_utc(naive)) is _Moment
    assert type(as_utc(naive)) is _Moment
    assert as_utc(naive) == naive.replace(tzinfo=UTC)
