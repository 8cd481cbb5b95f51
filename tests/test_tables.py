"""Table specs: every §3 table declared once, every §2 field has a column, rows convert."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.delta.tables import (
    ATTACHMENTS,
    EVENTS,
    PROJECTS,
    TABLES,
    TASK_TEMPLATES,
    RowSchemaError,
    TableSpec,
)

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def words(text: str) -> list[str]:
    return text.split()


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# CLAIMX_DOMAIN.md §2, field by field, and the column each lands in (when not just snake_case).
PROJECT_FIELDS = words(
    "projectId projectNumber mfn secondaryNumber createdDate status dateOfLoss typeOfLoss "
    "causeOfLoss lossDescription yearBuilt squareFootage dateReceived dateContacted "
    "plannedInspectionDate dateInspected appointmentDate customAttribute1 customAttribute2 "
    "customAttribute3 customExternalUniqueId companyName"
)
CUSTOMER_INFORMATION = {
    "firstName": "customer_first_name",
    "lastName": "customer_last_name",
    "customBusinessName": "customer_business_name",
    "businessLineType": "customer_business_line_type",
    "emails[].emailAddress": "customer_emails",
    "emails[primary].emailAddress": "customer_email",
    "phones[0].phoneNumber": "customer_phone",
    "phones[0].phoneCountryCode": "customer_phone_country_code",
    "phones[]": "customer_phones",
}
ADDRESS = words("street1 street2 city stateProvince zipPostcode county country")
PROJECT_EXTRA = words(
    "master_file_name policyholder_invited_at policyholder_joined_at xa_autolink_fail "
    "xa_autolink_fail_at last_enriched_at event_id primary_contact_user_name"
)
CONTACT_COLUMNS = words(
    "project_id contact_email contact_type first_name last_name phone_number phone_country_code "
    "is_primary_contact mfn"  # teamMembers[{userName → contact_email, primaryContact, mfn}]
)
MEDIA_FIELDS = words(
    "taskAssignmentId mediaType mediaName mediaDescription mediaComment latitude longitude "
    "gpsSource takenDate fullDownloadLink expiresAt"
)
TASK_FIELDS = words(
    "assignmentId taskId taskName formId projectId assigneeId assignorId assignor dateAssigned "
    "dateCompleted cancelledDate cancelledByResourceId status pdfProjectMediaId dateExported "
    "formResponseId stpEnabled stpStartedDate mfn xactimateExportable fraudLanguageAcceptedDate "
    "resubmitTaskAssignmentId url"
)
CUSTOM_TASK_FIELDS = words(
    "taskId compId name description formId formName enabled isManualDelivery "
    "isExternalLinkDelivery providePortalAccess notifyAssignedSendRecipient "
    "notifyAssignedSubject notifyTaskCompleted notifyCompletedSubject autoGeneratePdf "
    "modifiedBy modifiedById modifiedDate"
)
CUSTOM_TASK_RENAMED = {"default": "is_default", "allowReSubmit": "allow_resubmit"}
EXTERNAL_LINK_FIELDS = words(
    "linkId linkCode url notificationAccessMethod countryId stateId email firstName lastName "
    "phone phoneCountryCode"
)
VIDEO_FIELDS = words(
    "videoCollaborationId claimId mfn claimNumber policyNumber emailUserName claimRepFirstName "
    "claimRepLastName claimRepFullName numberOfVideos numberOfPhotos numberOfViewers "
    "sessionCount totalTimeSeconds totalTime createdDate liveCallFirstSession "
    "liveCallLastSession companyId companyName guid"
)

EXPECTED_COLUMNS: dict[str, set[str]] = {
    "claimx_projects": {snake(f) for f in PROJECT_FIELDS}
    | set(CUSTOMER_INFORMATION.values())
    | {f"address_{snake(f)}" for f in ADDRESS}
    | set(PROJECT_EXTRA),
    "claimx_contacts": set(CONTACT_COLUMNS),
    "claimx_media": {"media_id", "project_id"} | {snake(f) for f in MEDIA_FIELDS},
    "claimx_tasks": {snake(f) for f in TASK_FIELDS},
    "claimx_task_templates": {snake(f) for f in CUSTOM_TASK_FIELDS}
    | set(CUSTOM_TASK_RENAMED.values()),
    "claimx_external_links": {snake(f) for f in EXTERNAL_LINK_FIELDS},
    "claimx_video_collab": {snake(f) for f in VIDEO_FIELDS},
}

# §3: tables whose columns are listed in full.
EXACT_COLUMNS = {
    "claimx_events": [
        "event_id",
        "event_type",
        "project_id",
        "media_id",
        "task_assignment_id",
        "video_collaboration_id",
        "master_file_name",
        "ingested_at",
        "created_at",
        "event_date",
        "raw_data",
    ],
    "claimx_attachments": [
        "media_id",
        "project_id",
        "file_name",
        "file_type",
        "onelake_path",
        "bytes",
        "sha256",
        "content_type",
        "downloaded_at",
        "uploaded_at",
        "source_event_id",
    ],
}

KEYS = {
    "claimx_events": ("event_id",),
    "claimx_projects": ("project_id",),
    "claimx_contacts": ("project_id", "contact_email", "contact_type"),
    "claimx_media": ("media_id",),
    "claimx_tasks": ("assignment_id",),
    "claimx_task_templates": ("task_id",),
    "claimx_external_links": ("link_id",),
    "claimx_video_collab": ("video_collaboration_id",),
    "claimx_attachments": ("media_id",),
}

specs = pytest.mark.parametrize("spec", list(TABLES.values()), ids=list(TABLES))


def test_every_table_of_the_domain_is_declared_with_its_keys() -> None:
    assert {name: spec.keys for name, spec in TABLES.items()} == KEYS


@specs
def test_keys_are_required_columns(spec: TableSpec) -> None:
    for key in spec.keys:
        assert not spec.schema.field(key).nullable
        assert spec.schema.field(key).type == pa.string()


@specs
def test_names_are_snake_case_and_unique(spec: TableSpec) -> None:
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in spec.columns)
    assert len(set(spec.columns)) == len(spec.columns)


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
def test_every_api_field_has_a_column(table: str) -> None:
    missing = EXPECTED_COLUMNS[table] - set(TABLES[table].columns)
    assert not missing, f"{table} lacks {sorted(missing)}"


@pytest.mark.parametrize("table", sorted(EXACT_COLUMNS))
def test_documented_tables_have_exactly_their_columns(table: str) -> None:
    assert list(TABLES[table].columns) == EXACT_COLUMNS[table]


def test_events_are_partitioned_by_date_and_inserted_once() -> None:
    assert EVENTS.partition_by == ("event_date",)
    assert EVENTS.schema.field("event_date").type == pa.date32()
    assert EVENTS.write_mode == "insert_if_absent"
    assert all(spec.partition_by == () for spec in TABLES.values() if spec is not EVENTS)


def test_stale_writes_are_refused_by_version_columns() -> None:
    assert PROJECTS.version_column == "last_enriched_at"
    assert TASK_TEMPLATES.version_column == "modified_date"
    for spec in (PROJECTS, TASK_TEMPLATES):
        assert spec.version_column is not None
        assert spec.schema.field(spec.version_column).type == UTC_TIMESTAMP
    assert {spec.name for spec in TABLES.values() if spec.version_column} == {
        "claimx_projects",
        "claimx_task_templates",
    }


@specs
def test_times_are_utc_microseconds(spec: TableSpec) -> None:
    for field in spec.schema:
        if field.name.endswith(("_at", "_date")) and field.name != "event_date":
            assert field.type == UTC_TIMESTAMP, field.name


def test_sensible_types() -> None:
    video = TABLES["claimx_video_collab"].schema
    for name in ("number_of_videos", "number_of_photos", "number_of_viewers", "session_count"):
        assert video.field(name).type == pa.int64()
    media = TABLES["claimx_media"].schema
    assert media.field("latitude").type == media.field("longitude").type == pa.float64()
    assert PROJECTS.schema.field("xa_autolink_fail").type == pa.bool_()
    assert PROJECTS.schema.field("year_built").type == pa.int64()
    assert ATTACHMENTS.schema.field("bytes").type == pa.int64()
    for name in ("enabled", "is_default", "allow_resubmit", "auto_generate_pdf"):
        assert TASK_TEMPLATES.schema.field(name).type == pa.bool_()


def test_spec_refuses_keys_outside_its_schema() -> None:
    schema = pa.schema([pa.field("a", pa.string(), nullable=False)])
    with pytest.raises(RowSchemaError):
        TableSpec("t", schema, keys=("b",))
    with pytest.raises(RowSchemaError):
        TableSpec("t", schema, keys=("a",), version_column="v")
    with pytest.raises(RowSchemaError):
        TableSpec("t", schema, keys=())


# Rows → Arrow ------------------------------------------------------------------------------

EVENT_ROW: dict[str, Any] = {
    "event_id": "e1",
    "event_type": "PROJECT_CREATED",
    "project_id": "1",
    "ingested_at": datetime(2024, 1, 4, 12, 0, tzinfo=UTC),
    "created_at": datetime(2024, 1, 4, 12, 1, tzinfo=UTC),
    "event_date": date(2024, 1, 4),
}


def test_rows_become_a_table_of_the_spec_schema_with_nulls_for_missing_columns() -> None:
    table = EVENTS.to_arrow([EVENT_ROW, {**EVENT_ROW, "event_id": "e2", "media_id": "5"}])
    assert table.schema == EVENTS.schema
    rows = table.to_pylist()
    assert rows[0]["media_id"] is None
    assert rows[1]["media_id"] == "5"
    assert rows[0]["ingested_at"] == EVENT_ROW["ingested_at"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("year_built", 1990.5),
        ("year_built", True),
        ("square_footage", "1500"),
        ("xa_autolink_fail", 1),
        ("customer_emails", "a@x.test"),
        ("customer_phones", [{"phone_number": 555}]),
    ],
)
def test_values_arrow_would_coerce_are_refused(column: str, value: object) -> None:
    with pytest.raises(RowSchemaError) as caught:
        PROJECTS.to_arrow([{"project_id": "1", column: value}])
    assert f"claimx_projects.{column}" in str(caught.value)


def test_nested_and_typed_columns_convert() -> None:
    row = {
        "project_id": "1",
        "year_built": 1990,
        "square_footage": 1500.5,
        "customer_emails": ["a@x.test", "b@x.test"],
        "customer_phones": [{"phone_number": "555", "phone_country_code": "1"}],
        "xa_autolink_fail": True,
        "last_enriched_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    (converted,) = PROJECTS.to_arrow([row]).to_pylist()
    assert {k: converted[k] for k in row} == row


def test_no_rows_is_an_empty_table() -> None:
    table = ATTACHMENTS.to_arrow([])
    assert table.num_rows == 0
    assert table.schema == ATTACHMENTS.schema


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**EVENT_ROW, "raw": "{}"}, "not columns: ['raw']"),
        ({**EVENT_ROW, "event_id": None}, "claimx_events.event_id: required"),
        ({k: v for k, v in EVENT_ROW.items() if k != "project_id"}, "claimx_events.project_id"),
        ({**EVENT_ROW, "ingested_at": "yesterday"}, "claimx_events.ingested_at"),
        ({**EVENT_ROW, "event_date": 3.5}, "claimx_events.event_date: expected date32"),
        ({**EVENT_ROW, "event_date": datetime(2024, 1, 4, 9)}, "claimx_events.event_date"),
        ({**EVENT_ROW, "ingested_at": 1_700_000_000}, "claimx_events.ingested_at"),
        ({**EVENT_ROW, "media_id": 5}, "claimx_events.media_id: expected string, got int"),
    ],
)
def test_rows_that_do_not_fit_are_refused_naming_the_column(
    row: dict[str, Any], message: str
) -> None:
    with pytest.raises(RowSchemaError) as caught:
        EVENTS.to_arrow([row])
    assert message in str(caught.value)


zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
instants = st.one_of(
    st.builds(
        lambda wall, zone: wall.replace(tzinfo=zone),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        zones,
    ),
    # Zones whose offset moves, at any wall time and fold, and inside the hour the clocks go
    # back, where one wall time is two instants that ``==`` calls equal within the zone.
    st.one_of(
        st.datetimes(
            min_value=datetime(1990, 1, 1),
            max_value=datetime(2040, 1, 1),
            timezones=st.sampled_from([ZoneInfo("Europe/London"), ZoneInfo("America/New_York")]),
        ),
        st.builds(
            lambda start, minutes: start + timedelta(minutes=minutes),
            st.sampled_from(
                [
                    datetime(2024, 10, 27, 1, 0, tzinfo=ZoneInfo("Europe/London")),
                    datetime(2024, 11, 3, 1, 0, tzinfo=ZoneInfo("America/New_York")),
                    datetime(2024, 4, 7, 1, 30, tzinfo=ZoneInfo("Australia/Lord_Howe")),
                ]
            ),
            st.integers(min_value=0, max_value=29),
        ),
    ).flatmap(lambda moment: st.sampled_from([moment, moment.replace(fold=1 - moment.fold)])),
)


@st.composite
def timestamp_columns(draw: st.DrawFn) -> list[Any]:
    """A column of one instant: one object many times, the same instant in other zones, or
    a different instant, the same wall time at the other fold, a None or a non-datetime
    anywhere in it."""
    first = draw(instants)
    length = draw(st.integers(min_value=1, max_value=12))
    values: list[Any] = [first] * length
    for index in draw(st.lists(st.integers(min_value=0, max_value=length - 1), max_size=3)):
        values[index] = draw(
            st.one_of(
                st.just(first.astimezone(timezone(timedelta(hours=5))) if first.tzinfo else first),
                st.just(first.replace(fold=1 - first.fold)),
                instants,
                st.none(),
                st.just("2024-01-04T12:00:00Z"),
            )
        )
    return values


def test_one_wall_time_twice_in_a_zone_is_two_instants() -> None:
    """01:30 in London on the night the clocks go back, before and after: equal by ``==``,
    an hour apart, and kept apart in the column."""
    before = datetime(2024, 10, 27, 1, 30, tzinfo=ZoneInfo("Europe/London"))
    after = before.replace(fold=1)
    column = EVENTS.to_arrow([{**EVENT_ROW, "ingested_at": at} for at in (before, after, before)])
    assert column.column("ingested_at").to_pylist() == [
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 30, tzinfo=UTC),
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
    ]


def _converted_one_by_one(values: list[Any]) -> pa.Array | None:
    """What Arrow makes of each value, or None where the column refuses one (``ingested_at``
    is required and takes datetimes only)."""
    if not all(isinstance(value, datetime) for value in values):
        return None
    try:
        return pa.array(values, type=UTC_TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


@given(timestamp_columns())
def test_a_column_of_one_instant_converts_as_each_value_would(values: list[Any]) -> None:
    """A timestamp column holding one instant is converted once and repeated: the same
    values, and the same refusals, as converting each value."""
    rows = [{**EVENT_ROW, "ingested_at": value} for value in values]
    expected = _converted_one_by_one(values)
    if expected is None:
        with pytest.raises(RowSchemaError, match=r"claimx_events\.ingested_at"):
            EVENTS.to_arrow(rows)
    else:
        assert EVENTS.to_arrow(rows).column("ingested_at").combine_chunks().equals(expected)
