"""Row building without a server: the per-table column plans and the fast paths for common
values must give the rows and the refusals the type-by-type conversion gives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimx_flow.delta.tables import MEDIA, TASK_TEMPLATES, TableSpec
from claimx_flow.enrichment import rows

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

ITEM = {
    "mediaID": 5000004,
    "taskAssignmentId": 5000001,
    "mediaType": "jpg",
    "mediaName": "IMG_5000004.jpg",
    "mediaDescription": "Roof",
    "mediaComment": "",
    "latitude": 32.5,
    "longitude": -95,
    "takenDate": "2024-02-24T21:11:48+02:00",
    "fullDownloadLink": "https://example.test/media/5000/5000004?sig=abc",
    "expiresAt": 1_790_000_000_000,
}


def test_a_media_row_has_every_column_typed_in_schema_order() -> None:
    row = rows.media_row(ITEM, "5000", "e-1", NOW)
    assert list(row) == MEDIA.schema.names
    assert row["media_id"] == "5000004"
    assert row["task_assignment_id"] == "5000001"
    assert row["media_comment"] is None
    assert row["latitude"] == 32.5
    assert row["longitude"] == -95.0 and isinstance(row["longitude"], float)
    assert row["taken_date"] == datetime(
        2024, 2, 24, 21, 11, 48, tzinfo=timezone(timedelta(hours=2))
    )
    assert row["expires_at"] == datetime.fromtimestamp(1_790_000_000, tz=UTC)
    assert row["gps_source"] is None
    assert (row["event_id"], row["last_enriched_at"]) == ("e-1", NOW)
    MEDIA.to_arrow([row])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("mediaName", "caf\ud800", "field media_name"),
        ("mediaName", {"a": 1}, "field media_name: a dict, not a scalar"),
        ("mediaType", [1], "field media_type: a list, not a scalar"),
        ("latitude", True, "field latitude: not a number"),
        ("latitude", "north", "field latitude"),
        ("latitude", 10**400, "field latitude"),
        ("takenDate", "yesterday", "field taken_date"),
        ("takenDate", False, "field taken_date: not a timestamp"),
        ("mediaID", "\ud800", "field mediaID"),
    ],
)
def test_a_value_the_column_cannot_hold_fails_the_row(field: str, value: Any, reason: str) -> None:
    with pytest.raises(rows.PayloadError, match=reason):
        rows.media_row({**ITEM, field: value}, "5000", "e-1", NOW)


def test_non_ascii_text_that_encodes_is_kept() -> None:
    assert rows.media_row({**ITEM, "mediaName": "façade.jpg"}, "5", "e", NOW)["media_name"] == (
        "façade.jpg"
    )


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (pa.int64(), "12", 12),
        (pa.int64(), 12.0, 12),
        (pa.int32(), 2**31 - 1, 2**31 - 1),
        (pa.uint8(), 255, 255),
        (pa.bool_(), "yes", True),
        (pa.date32(), "2024-02-24T21:11:48Z", date(2024, 2, 24)),
        (pa.string(), 7, "7"),
        (pa.string(), 7.5, "7.5"),
        (pa.float64(), 3, 3.0),
    ],
)
def test_coerce_converts_what_the_column_can_hold(
    kind: pa.DataType, value: Any, expected: Any
) -> None:
    assert rows.coerce(value, kind, "c") == expected


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (pa.int64(), 1.5),
        (pa.int64(), True),
        (pa.int64(), 2**63),
        (pa.int32(), -(2**31) - 1),
        (pa.uint8(), -1),
        (pa.bool_(), 2),
    ],
)
def test_coerce_refuses_what_the_column_cannot_hold(kind: pa.DataType, value: Any) -> None:
    with pytest.raises(rows.PayloadError, match="field c"):
        rows.coerce(value, kind, "c")


def test_column_plans_follow_each_spec_and_its_renames() -> None:
    template = {"taskId": 1, "default": True, "isDefault": False, "allowReSubmit": "true"}
    renamed = rows.row_from(
        TASK_TEMPLATES,
        template,
        renames={"is_default": "default", "allow_resubmit": "allowReSubmit"},
    )
    plain = rows.row_from(TASK_TEMPLATES, template)
    assert (renamed["is_default"], renamed["allow_resubmit"]) == (True, True)
    assert (plain["is_default"], plain["allow_resubmit"]) == (False, None)
    other = TableSpec("other", pa.schema([("task_id", pa.int64())]), keys=("task_id",))
    assert rows.row_from(other, template) == {"task_id": 1}
    assert (
        rows.row_from(TASK_TEMPLATES, template, skip=frozenset({"task_id"})).get("task_id") is None
    )


def _timestamp_as_before(value: Any) -> datetime:
    """``parse_timestamp`` for text before its fast path for ``Z``: every text through
    ``fromisoformat`` with ``Z`` spelled ``+00:00``, then to UTC."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _answer(read: Any, value: str) -> tuple[str, Any]:
    try:
        moment = read(value)
    except (ValueError, OverflowError) as error:
        return "refused", type(error).__name__
    return "read", (moment, moment.tzinfo is UTC)


_iso_texts = st.one_of(
    st.datetimes().map(datetime.isoformat),
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.datetimes(timezones=st.just(UTC)).map(lambda m: m.isoformat().replace("+00:00", "Z")),
    st.datetimes().map(lambda m: m.isoformat(sep=" ", timespec="minutes") + "Z"),
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        _iso_texts,
        st.tuples(
            _iso_texts, st.integers(0, 40), st.sampled_from(["Z", "z", "+00:00", " ", "T"])
        ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
        st.text(alphabet="0123456789-:TZz+. ", max_size=30),
    )
)
def test_timestamp_text_is_read_as_before_its_fast_path(value: str) -> None:
    assert _answer(rows.parse_timestamp, value) == _answer(_timestamp_as_before, value)


@pytest.mark.parametrize("empty", ["", None])
def test_a_template_or_link_without_an_id_makes_no_row(empty: Any) -> None:
    """An empty ``taskId`` or ``linkId`` is no id, as everywhere (``as_id``): the task's row,
    and no template or link row that its table would refuse (which put the event in Delta and
    in the DLQ at once, on every replay)."""
    assignment = {
        "assignmentId": 7,
        "projectId": 5,
        "customTask": {"taskId": empty, "taskName": "Roof"},
        "externalLinkData": {"linkId": empty, "url": "https://example.test/x"},
    }
    made = rows.task_rows(assignment, "5", "e-1", datetime(2024, 1, 1, tzinfo=UTC))
    assert [table for table, _ in made] == ["claimx_tasks"]
    assert made[0][1]["link_id"] is None


def test_a_template_and_link_with_ids_make_their_rows() -> None:
    assignment = {
        "assignmentId": 7,
        "customTask": {"taskId": 11, "taskName": "Roof"},
        "externalLinkData": {"linkId": "L-3", "url": "https://example.test/x"},
    }
    made = rows.task_rows(assignment, "5", "e-1", datetime(2024, 1, 1, tzinfo=UTC))
    assert [table for table, _ in made] == [
        "claimx_tasks",
        "claimx_task_templates",
        "claimx_external_links",
    ]
    assert (made[1][1]["task_id"], made[2][1]["link_id"]) == ("11", "L-3")
