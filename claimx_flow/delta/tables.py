"""Every Delta table of the pipeline (CLAIMX_DOMAIN.md §3), declared once as an Arrow schema.

Writers, readers and tests all take the schema, merge keys and partitioning from here, so a
column cannot exist in one place and be forgotten in another. Every field of the ClaimX API
responses (§2) has a column; rows with keys no column knows are refused, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

import pyarrow as pa

from claimx_flow.errors import ClaimxError

STRING = pa.string()
LARGE_STRING = pa.large_string()  # the same Delta "string"; 64-bit offsets for long texts
INT = pa.int64()
FLOAT = pa.float64()
BOOL = pa.bool_()
TIMESTAMP = pa.timestamp("us", tz="UTC")
DATE = pa.date32()
STRINGS = pa.list_(pa.string())
PHONES = pa.list_(pa.struct([("phone_number", pa.string()), ("phone_country_code", pa.string())]))

WriteMode = Literal["upsert", "insert_if_absent"]


TableRow = tuple[str, dict[str, Any]]
"""A row and the name of the table it goes to: what stages hand the Delta sinks."""


class RowSchemaError(ClaimxError, ValueError):
    """Rows that do not fit a table's schema: a programming error, named by table and column."""


@dataclass(frozen=True)
class TableSpec:
    """One Delta table: its schema, merge keys, partitioning and how rows replace rows.

    ``version_column`` guards against stale writes: a stored row is replaced only by one whose
    value there is not older (projects: ``last_enriched_at``; task templates: ``modified_date``,
    so an unchanged template is not rewritten with older data). ``write_mode`` says whether a
    matched row is updated at all (``insert_if_absent``: events are written once).
    """

    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    write_mode: WriteMode = "upsert"
    version_column: str | None = None

    def __post_init__(self) -> None:
        columns = set(self.schema.names)
        named = [*self.keys, *self.partition_by]
        if self.version_column is not None:
            named.append(self.version_column)
        unknown = [name for name in named if name not in columns]
        if unknown:
            raise RowSchemaError(f"{self.name}: {unknown} are not columns of the schema")
        if not self.keys:
            raise RowSchemaError(f"{self.name}: a table needs merge keys")
        if len(set(self.schema.names)) != len(self.schema.names):
            raise RowSchemaError(f"{self.name}: duplicate column names")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    def to_arrow(self, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
        """Rows (dicts by column name) as a table of exactly this schema.

        Missing columns become null; a key that is not a column, a value of the wrong type, a
        text Arrow cannot encode (a lone surrogate), or a null or empty merge key raises
        ``RowSchemaError`` naming the column.
        """
        rows = list(rows)
        columns = set(self.schema.names)
        if not all(map(columns.issuperset, rows)):
            for index, row in enumerate(rows):
                unknown = row.keys() - columns
                if unknown:
                    raise RowSchemaError(
                        f"{self.name}: row {index} has keys that are not columns: {sorted(unknown)}"
                    )
        columns_of_rows = {name: _values(rows, name) for name in self.schema.names}
        return self.from_columns(columns_of_rows, len(rows))

    def from_columns(self, columns: Mapping[str, list[Any]], length: int) -> pa.Table:
        """Columns (lists of ``length`` values by column name; a missing one is all null) as a
        table of exactly this schema, checked as :meth:`to_arrow` checks rows: a stage that
        holds its values column by column skips building a dict per row."""
        unknown = columns.keys() - set(self.schema.names)
        if unknown:
            raise RowSchemaError(f"{self.name}: not columns: {sorted(unknown)}")
        arrays = [
            self._column(field, columns.get(field.name) or [None] * length) for field in self.schema
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _column(self, field: pa.Field, values: list[Any]) -> pa.Array:
        accepted = _python_types(field.type)
        if accepted is not None and not _only_exactly(values, accepted):
            for value in values:
                if value is not None and not _is_a(value, accepted):
                    # The type only: a value (a presigned URL, say) may be a secret.
                    raise RowSchemaError(
                        f"{self.name}.{field.name}: expected {field.type}, "
                        f"got {type(value).__name__}"
                    )
        try:
            if pa.types.is_timestamp(field.type) and _one_instant(values):
                array = pa.repeat(pa.scalar(values[0], type=field.type), len(values))
            else:
                array = pa.array(values, type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeError) as exc:
            raise RowSchemaError(f"{self.name}.{field.name}: {exc}") from None
        if not field.nullable and array.null_count:
            raise RowSchemaError(f"{self.name}.{field.name}: required, but null in some rows")
        if not field.nullable and _is_text(field.type) and "" in values:
            raise RowSchemaError(f"{self.name}.{field.name}: required, but empty in some rows")
        return array


def _one_instant(values: list[Any]) -> bool:
    """Whether a timestamp column holds one UTC instant in every row, as a batch's
    ``last_enriched_at`` does: Arrow converts a datetime in about 0.3 us, so a batch of 500
    rows converts it once instead. The first value must be a plain UTC datetime: a value equal
    to it is then the same instant, all Arrow keeps of it (within one other zone, ``==``
    compares wall times and ignores ``fold``, so two instants an hour apart can be equal).
    The first test is one identity check, so other columns cost nothing."""
    first = values[0] if values else None
    return (
        type(first) is datetime
        and values[-1] is first
        and first.tzinfo is UTC
        and values.count(first) == len(values)
    )


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _values(rows: list[Mapping[str, Any]], name: str) -> list[Any]:
    """One column's values. ``name`` is bound once: Arrow's ``Field.name`` builds a new str on
    every read, which cost more per row than the rest of the conversion."""
    return [row.get(name) for row in rows]


def _python_types(kind: pa.DataType) -> tuple[type, ...] | None:
    """The Python values a scalar column takes, checked before Arrow's lenient conversion.

    Arrow would turn ``1.5`` into ``1`` for an int column, an epoch number into a timestamp in
    microseconds and a string into a list of letters: silent data loss, so only the matching
    Python types are let through. Inside lists and structs our columns hold only strings,
    which Arrow checks strictly itself.
    """
    if pa.types.is_timestamp(kind):
        return (datetime,)
    if pa.types.is_date(kind):
        return (date,)
    if pa.types.is_boolean(kind):
        return (bool,)
    if pa.types.is_integer(kind):
        return (int,)
    if pa.types.is_floating(kind):
        return (int, float)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return (str,)
    if pa.types.is_list(kind):
        return (list, tuple)  # a str is a sequence too, and would become a list of letters
    if pa.types.is_struct(kind):
        return (dict,)
    return None


def _only_exactly(values: list[Any], accepted: tuple[type, ...]) -> bool:
    """Whether every value is None or of exactly an accepted type: then each passes ``_is_a``.

    One pass at C speed over the column instead of a Python call per value; anything else
    (a subclass, a wrong type) is left to the per-value check, so its answer and its error
    stay those of ``_is_a``.
    """
    kinds = set(map(type, values))
    kinds.discard(type(None))
    return kinds.issubset(accepted)


def _is_a(value: object, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False  # bool is an int to Python, not to a table
    if isinstance(value, datetime) and datetime not in accepted:
        return False  # datetime is a date to Python; as a date it would lose its time
    return isinstance(value, accepted)


def _schema(keys: Iterable[str], *columns: tuple[str, pa.DataType]) -> pa.Schema:
    """Columns in order; the key columns (and only they) are required."""
    required = set(keys)
    return pa.schema(
        [pa.field(name, kind, nullable=name not in required) for name, kind in columns]
    )


# Lineage columns on every table the enrichment stage writes: which event last changed the row.
_ENRICHED = (("event_id", STRING), ("last_enriched_at", TIMESTAMP))

EVENTS = TableSpec(
    name="claimx_events",
    keys=("event_id",),
    partition_by=("event_date",),
    write_mode="insert_if_absent",
    schema=_schema(
        ("event_id", "event_type", "project_id", "ingested_at", "created_at", "event_date"),
        ("event_id", STRING),
        ("event_type", STRING),
        ("project_id", STRING),
        ("media_id", STRING),
        ("task_assignment_id", STRING),
        ("video_collaboration_id", STRING),
        ("master_file_name", STRING),
        ("ingested_at", TIMESTAMP),
        ("created_at", TIMESTAMP),
        ("event_date", DATE),
        # The event as it arrived: its bytes as UTF-8 text, unchanged (every field, known or
        # not). Large: a batch of events near MAX_EVENT_BYTES must not overflow 32-bit offsets.
        ("raw_data", LARGE_STRING),
    ),
)

PROJECTS = TableSpec(
    name="claimx_projects",
    keys=("project_id",),
    version_column="last_enriched_at",
    schema=_schema(
        ("project_id",),
        ("project_id", STRING),
        ("project_number", STRING),
        ("mfn", STRING),
        ("secondary_number", STRING),
        ("created_date", TIMESTAMP),
        ("status", STRING),
        ("date_of_loss", TIMESTAMP),
        ("type_of_loss", STRING),
        ("cause_of_loss", STRING),
        ("loss_description", STRING),
        ("year_built", INT),
        ("square_footage", FLOAT),
        ("date_received", TIMESTAMP),
        ("date_contacted", TIMESTAMP),
        ("planned_inspection_date", TIMESTAMP),
        ("date_inspected", TIMESTAMP),
        ("appointment_date", TIMESTAMP),
        ("custom_attribute1", STRING),
        ("custom_attribute2", STRING),
        ("custom_attribute3", STRING),
        ("custom_external_unique_id", STRING),
        # customerInformation, flattened: the primary email and first phone as plain columns,
        # and every email and phone as lists so none is lost.
        ("customer_first_name", STRING),
        ("customer_last_name", STRING),
        ("customer_business_name", STRING),
        ("customer_business_line_type", STRING),
        ("customer_email", STRING),
        ("customer_emails", STRINGS),
        ("customer_phone", STRING),
        ("customer_phone_country_code", STRING),
        ("customer_phones", PHONES),
        # address, flattened
        ("address_street1", STRING),
        ("address_street2", STRING),
        ("address_city", STRING),
        ("address_state_province", STRING),
        ("address_zip_postcode", STRING),
        ("address_county", STRING),
        ("address_country", STRING),
        # from the response around the project
        ("company_name", STRING),
        ("primary_contact_user_name", STRING),
        # set by later events
        ("master_file_name", STRING),
        ("policyholder_invited_at", TIMESTAMP),
        ("policyholder_joined_at", TIMESTAMP),
        ("xa_autolink_fail", BOOL),
        ("xa_autolink_fail_at", TIMESTAMP),
        *_ENRICHED,
    ),
)

CONTACTS = TableSpec(
    name="claimx_contacts",
    keys=("project_id", "contact_email", "contact_type"),
    schema=_schema(
        ("project_id", "contact_email", "contact_type"),
        ("project_id", STRING),
        ("contact_email", STRING),
        ("contact_type", STRING),  # POLICYHOLDER or CLAIM_REP
        ("first_name", STRING),
        ("last_name", STRING),
        ("business_name", STRING),
        ("phone_number", STRING),
        ("phone_country_code", STRING),
        ("is_primary_contact", BOOL),  # teamMembers[].primaryContact
        ("mfn", STRING),  # teamMembers[].mfn
        *_ENRICHED,
    ),
)

MEDIA = TableSpec(
    name="claimx_media",
    keys=("media_id",),
    schema=_schema(
        ("media_id",),
        ("media_id", STRING),
        ("project_id", STRING),
        ("task_assignment_id", STRING),
        ("media_type", STRING),
        ("media_name", STRING),
        ("media_description", STRING),
        ("media_comment", STRING),
        ("latitude", FLOAT),
        ("longitude", FLOAT),
        ("gps_source", STRING),
        ("taken_date", TIMESTAMP),
        ("full_download_link", STRING),
        ("expires_at", TIMESTAMP),
        *_ENRICHED,
    ),
)

TASKS = TableSpec(
    name="claimx_tasks",
    keys=("assignment_id",),
    schema=_schema(
        ("assignment_id",),
        ("assignment_id", STRING),
        ("task_id", STRING),
        ("task_name", STRING),
        ("form_id", STRING),
        ("project_id", STRING),
        ("assignee_id", STRING),
        ("assignor_id", STRING),
        ("assignor", STRING),
        ("date_assigned", TIMESTAMP),
        ("date_completed", TIMESTAMP),
        ("cancelled_date", TIMESTAMP),
        ("cancelled_by_resource_id", STRING),
        ("status", STRING),
        ("pdf_project_media_id", STRING),
        ("date_exported", TIMESTAMP),
        ("form_response_id", STRING),
        ("stp_enabled", BOOL),
        ("stp_started_date", TIMESTAMP),
        ("mfn", STRING),
        ("xactimate_exportable", BOOL),
        ("fraud_language_accepted_date", TIMESTAMP),
        ("resubmit_task_assignment_id", STRING),
        ("url", STRING),
        ("link_id", STRING),  # externalLinkData.linkId, to join claimx_external_links
        *_ENRICHED,
    ),
)

TASK_TEMPLATES = TableSpec(
    name="claimx_task_templates",
    keys=("task_id",),
    version_column="modified_date",
    schema=_schema(
        ("task_id",),
        ("task_id", STRING),
        ("comp_id", STRING),
        ("name", STRING),
        ("description", STRING),
        ("form_id", STRING),
        ("form_name", STRING),
        ("enabled", BOOL),
        ("is_default", BOOL),  # customTask.default (a reserved word in SQL)
        ("is_manual_delivery", BOOL),
        ("is_external_link_delivery", BOOL),
        ("provide_portal_access", BOOL),
        ("notify_assigned_send_recipient", BOOL),
        ("notify_assigned_subject", STRING),
        ("notify_task_completed", BOOL),
        ("notify_completed_subject", STRING),
        ("allow_resubmit", BOOL),
        ("auto_generate_pdf", BOOL),
        ("modified_by", STRING),
        ("modified_by_id", STRING),
        ("modified_date", TIMESTAMP),
        *_ENRICHED,
    ),
)

EXTERNAL_LINKS = TableSpec(
    name="claimx_external_links",
    keys=("link_id",),
    schema=_schema(
        ("link_id",),
        ("link_id", STRING),
        ("link_code", STRING),
        ("url", STRING),
        ("notification_access_method", STRING),
        ("country_id", STRING),
        ("state_id", STRING),
        ("email", STRING),
        ("first_name", STRING),
        ("last_name", STRING),
        ("phone", STRING),
        ("phone_country_code", STRING),
        ("assignment_id", STRING),  # the task assignment the link came with
        ("project_id", STRING),
        *_ENRICHED,
    ),
)

VIDEO_COLLAB = TableSpec(
    name="claimx_video_collab",
    keys=("video_collaboration_id",),
    schema=_schema(
        ("video_collaboration_id",),
        ("video_collaboration_id", STRING),  # videoCollaborationId, or id
        ("claim_id", STRING),
        ("mfn", STRING),
        ("claim_number", STRING),
        ("policy_number", STRING),
        ("email_user_name", STRING),
        ("claim_rep_first_name", STRING),
        ("claim_rep_last_name", STRING),
        ("claim_rep_full_name", STRING),
        ("number_of_videos", INT),
        ("number_of_photos", INT),
        ("number_of_viewers", INT),
        ("session_count", INT),
        ("total_time_seconds", FLOAT),
        ("total_time", STRING),
        ("created_date", TIMESTAMP),
        ("live_call_first_session", TIMESTAMP),
        ("live_call_last_session", TIMESTAMP),
        ("company_id", STRING),
        ("company_name", STRING),
        ("guid", STRING),
        ("project_id", STRING),
        *_ENRICHED,
    ),
)

ATTACHMENTS = TableSpec(
    name="claimx_attachments",
    keys=("media_id",),
    schema=_schema(
        ("media_id",),
        ("media_id", STRING),
        ("project_id", STRING),
        ("file_name", STRING),
        ("file_type", STRING),
        ("onelake_path", STRING),
        ("bytes", INT),
        ("sha256", STRING),
        ("content_type", STRING),
        ("downloaded_at", TIMESTAMP),
        ("uploaded_at", TIMESTAMP),
        ("source_event_id", STRING),
    ),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        EVENTS,
        PROJECTS,
        CONTACTS,
        MEDIA,
        TASKS,
        TASK_TEMPLATES,
        EXTERNAL_LINKS,
        VIDEO_COLLAB,
        ATTACHMENTS,
    )
}


T = TypeVar("T")

Refusal = tuple[T, Exception]
"""An item whose row(s) did not fit, and why."""


def convert(
    items: Sequence[T], build: Callable[[Sequence[T]], pa.Table]
) -> tuple[pa.Table | None, list[T], list[Refusal[T]]]:
    """``build(items)``, or, when a row does not fit (``RowSchemaError``), ``build`` of the
    items that do: (the table or None, the items in it in order, the refused items with why).

    The whole batch is tried first, so a clean batch costs one conversion; a poisoned one is
    halved until each refused item is alone (about 2 log2(n) conversions per refused item).
    """
    kept: list[T] = []
    refused: list[Refusal[T]] = []
    tables: list[pa.Table] = []

    def attempt(part: Sequence[T]) -> None:
        try:
            table = build(part)
        except RowSchemaError as error:
            if len(part) == 1:
                refused.append((part[0], error))
                return
            middle = len(part) // 2
            attempt(part[:middle])
            attempt(part[middle:])
            return
        tables.append(table)
        kept.extend(part)

    if items:
        attempt(items)
    if not tables:
        return None, kept, refused
    return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), kept, refused
