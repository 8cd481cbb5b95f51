"""ClaimX API payloads as table rows, driven by the table schemas.

Each column is filled from the payload field of the same name in camelCase (with a few named
exceptions), and coerced to the column's type. The schema decides, so a column added to a table
is filled here without another list to keep in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import pyarrow as pa

from claimx_flow.delta.tables import (
    EXTERNAL_LINKS,
    MEDIA,
    PROJECTS,
    TASK_TEMPLATES,
    TASKS,
    VIDEO_COLLAB,
    TableSpec,
)
from claimx_flow.errors import ClaimxError
from claimx_flow.models.types import normalise_id, with_utc

Row = dict[str, Any]
JsonObject = Mapping[str, Any]


class PayloadError(ClaimxError, ValueError):
    """An API response whose values do not fit the table (a wrong type, a bad date)."""


@cache  # a few hundred column names
def camel(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


Convert = Callable[[Any], Any]


def coerce(value: Any, kind: pa.DataType, column: str) -> Any:
    """A JSON value as the Python value the column's Arrow type takes."""
    if value is None or value == "":
        return None
    return _convert(_converter(kind), value, column)


def _convert(convert: Convert | None, value: Any, column: str) -> Any:
    if convert is None:
        return value
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError) as exc:
        # Caught here, not in the Delta sink: a value Arrow cannot hold would fail the whole
        # batch's write, again on every replay, instead of dead-lettering the one event.
        raise PayloadError(f"field {column}: {_short(exc)}") from None


@cache  # the type tests cost more than most conversions, so each type is tested once
def _converter(kind: pa.DataType) -> Convert | None:
    """How a non-empty JSON value becomes the column's Python value; None keeps it as it is."""
    if pa.types.is_timestamp(kind):
        return parse_timestamp
    if pa.types.is_date(kind):
        return _date
    if pa.types.is_boolean(kind):
        return _boolean
    if pa.types.is_integer(kind):
        return _integer_of(kind)
    if pa.types.is_floating(kind):
        return _float
    if pa.types.is_string(kind):
        return _text
    return None


def as_text(value: Any, column: str) -> str | None:
    """``coerce`` for a text column, without looking up the conversion of its type."""
    if value is None or value == "":
        return None
    converted: str = _convert(_text, value, column)
    return converted


def as_id(value: Any, column: str) -> str | None:
    """An id from an answer, read as ids are read everywhere (``normalise_id``): ``true``
    or ``1.5`` is refused (a ``PayloadError`` for the event), not stored as "True"."""
    if value is None or value == "":
        return None
    converted: str = _convert(_id, value, column)
    return converted


def _date(value: Any) -> date:
    return value if isinstance(value, date) else parse_timestamp(value).date()


def _integer_of(kind: pa.DataType) -> Convert:
    bits = kind.bit_width
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if pa.types.is_unsigned_integer(kind):
        low, high = 0, 2**bits - 1

    def integer(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("not an integer")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"integer out of range for {kind}")
        return number

    return integer


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, bool):
        raise ValueError("not a number")
    return float(value)


def _text(value: Any) -> str:
    if type(value) is str and value.isascii():
        return value  # the common case first: ASCII text always encodes
    if type(value) is int:
        return str(value)
    if isinstance(value, dict | list):
        raise ValueError(f"a {type(value).__name__}, not a scalar")
    text = str(value)
    text.encode("utf-8")  # a lone surrogate (valid JSON: "\ud800") has no UTF-8 form
    return text


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:199] + "…"


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 text (``Z`` or offset; naive means UTC) or epoch milliseconds."""
    if type(value) is str:
        # ClaimX writes UTC with a ``Z``, which Python 3.11 reads as UTC itself: 160 ns a
        # value where the general path below took 430 (there are several in every row).
        # Anything else, or text this refuses, takes the general path and its answer.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is UTC:
                return moment
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value / 1000, tz=UTC)
        except OSError:  # past the C library's time_t (EOVERFLOW), where Python raises OSError
            raise OverflowError("epoch milliseconds out of range") from None
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a timestamp: {type(value).__name__}")
    if moment.tzinfo is None:
        return with_utc(moment)
    # An instant at the calendar's edge (9999-12-31T23:59-12:00) has no UTC form in Python;
    # stored anyway, it would make the whole table unreadable to every Python reader.
    return moment.astimezone(UTC)  # OverflowError: "out of range in UTC" for this one value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.lower() in {"true", "1", "yes"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"not a boolean: {value!r}")


Column = tuple[str, str | None, Convert | None]  # name, payload field (None: not filled), how
PlanKey = tuple[int, tuple[tuple[str, str], ...], frozenset[str]]
_PLANS: dict[PlanKey, tuple[TableSpec, tuple[Column, ...]]] = {}


def row_from(
    spec: TableSpec,
    payload: JsonObject,
    *,
    renames: Mapping[str, str] | None = None,
    skip: frozenset[str] = frozenset(),
    **values: Any,
) -> Row:
    """One row of ``spec`` from ``payload``; ``values`` are set as given (already typed)."""
    row: Row = {}
    name = ""
    try:
        for name, source, convert in _columns(spec, renames, skip):
            if name in values:
                row[name] = values[name]
            elif source is not None:
                value = payload.get(source)
                if value is None or value == "":
                    row[name] = None
                else:
                    row[name] = value if convert is None else convert(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"field {name}: {_short(exc)}") from None  # as ``coerce`` says it
    return row


def _columns(
    spec: TableSpec, renames: Mapping[str, str] | None, skip: frozenset[str]
) -> tuple[Column, ...]:
    """Each column's source field and conversion, worked out once per table (hashing a spec
    hashes its whole schema, so the plans are keyed by the spec's identity)."""
    key = (id(spec), tuple(renames.items()) if renames else (), skip)
    planned = _PLANS.get(key)
    if planned is None or planned[0] is not spec:
        names = renames or {}
        columns = tuple(
            (
                field.name,
                None
                if field.name in skip or pa.types.is_nested(field.type)
                else names.get(field.name, camel(field.name)),
                _id if _is_id_key(spec, field) else _converter(field.type),
            )
            for field in spec.schema
        )
        planned = _PLANS[key] = (spec, columns)
    return planned[1]


def _is_id_key(spec: TableSpec, field: pa.Field) -> bool:
    """A merge key that is an id: read as ids are read everywhere (``normalise_id``), never as
    text, or ``true`` and ``1.5`` would key rows ("True", "1.5") and overwrite each other."""
    return field.name in spec.keys and field.name.endswith("_id") and pa.types.is_string(field.type)


def _id(value: Any) -> str:
    return normalise_id(value)  # a PydanticCustomError is a ValueError: the row's PayloadError


def lineage(event_id: str, enriched_at: datetime) -> dict[str, Any]:
    return {"event_id": event_id, "last_enriched_at": enriched_at}


# The project --------------------------------------------------------------------------------

_PROJECT_OWN = frozenset(
    {
        "master_file_name",
        "policyholder_invited_at",
        "policyholder_joined_at",
        "xa_autolink_fail",
        "xa_autolink_fail_at",
        "company_name",
        "primary_contact_user_name",
    }
)


def project_row(response: JsonObject, event_id: str, enriched_at: datetime) -> Row:
    """The full project row from a project response (``data`` wrapper already removed)."""
    project = _object(response.get("project", response), "project")
    customer = _object(project.get("customerInformation") or {}, "customerInformation")
    address = _object(project.get("address") or {}, "address")
    emails = [e for e in customer.get("emails") or [] if isinstance(e, dict)]
    phones = [p for p in customer.get("phones") or [] if isinstance(p, dict)]
    primary_email = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    team = [m for m in response.get("teamMembers") or [] if isinstance(m, dict)]
    primary_member = next((m for m in team if m.get("primaryContact")), None)
    flat = {
        **project,
        "customerFirstName": customer.get("firstName"),
        "customerLastName": customer.get("lastName"),
        "customerBusinessName": customer.get("customBusinessName"),
        "customerBusinessLineType": customer.get("businessLineType"),
        "customerEmail": primary_email.get("emailAddress") if primary_email else None,
        "customerPhone": phones[0].get("phoneNumber") if phones else None,
        "customerPhoneCountryCode": phones[0].get("phoneCountryCode") if phones else None,
        **{f"address{k[:1].upper()}{k[1:]}": v for k, v in address.items()},
    }
    row = row_from(
        PROJECTS,
        flat,
        skip=_PROJECT_OWN,
        company_name=as_text(response.get("companyName"), "company_name"),
        primary_contact_user_name=as_text(
            primary_member.get("userName") if primary_member else None, "userName"
        ),
        customer_emails=[str(e["emailAddress"]) for e in emails if e.get("emailAddress")],
        customer_phones=[
            {
                "phone_number": as_text(p.get("phoneNumber"), "phoneNumber"),
                "phone_country_code": as_text(p.get("phoneCountryCode"), "phoneCountryCode"),
            }
            for p in phones
        ],
        **lineage(event_id, enriched_at),
    )
    if row["project_id"] is None:
        raise PayloadError("project response without projectId")
    return row


def contact_rows(response: JsonObject, project_id: str, event_id: str, at: datetime) -> list[Row]:
    """One POLICYHOLDER contact (primary email) and one CLAIM_REP per team member."""
    project = _object(response.get("project", response), "project")
    customer = _object(project.get("customerInformation") or {}, "customerInformation")
    emails = [e for e in customer.get("emails") or [] if isinstance(e, dict)]
    phones = [p for p in customer.get("phones") or [] if isinstance(p, dict)]
    primary = next((e for e in emails if e.get("primary")), emails[0] if emails else None)
    rows: list[Row] = []
    if primary and primary.get("emailAddress"):
        rows.append(
            {
                "project_id": project_id,
                "contact_email": str(primary["emailAddress"]),
                "contact_type": "POLICYHOLDER",
                "first_name": as_text(customer.get("firstName"), "firstName"),
                "last_name": as_text(customer.get("lastName"), "lastName"),
                "business_name": as_text(customer.get("customBusinessName"), "customBusinessName"),
                "phone_number": as_text(
                    phones[0].get("phoneNumber") if phones else None, "phoneNumber"
                ),
                "phone_country_code": as_text(
                    phones[0].get("phoneCountryCode") if phones else None, "phoneCountryCode"
                ),
                **lineage(event_id, at),
            }
        )
    for member in response.get("teamMembers") or []:
        if isinstance(member, dict) and member.get("userName"):
            rows.append(
                {
                    "project_id": project_id,
                    "contact_email": str(member["userName"]),
                    "contact_type": "CLAIM_REP",
                    "is_primary_contact": coerce(
                        member.get("primaryContact"), pa.bool_(), "primaryContact"
                    ),
                    "mfn": as_text(member.get("mfn"), "mfn"),
                    **lineage(event_id, at),
                }
            )
    return rows


# Media, tasks, video ------------------------------------------------------------------------


def media_row(item: JsonObject, project_id: str, event_id: str, at: datetime) -> Row:
    """ClaimX spells the id ``mediaID`` or ``mediaId``; the handler matches either, so must this
    (a row without its key would fail the table's whole write, not just this event)."""
    identifier = item.get("mediaID", item.get("mediaId"))
    row = row_from(
        MEDIA,
        item,
        media_id=as_id(identifier, "mediaID"),
        project_id=project_id,
        **lineage(event_id, at),
    )
    if row["media_id"] is None:
        raise PayloadError("media item without mediaID")
    return row


def task_rows(
    assignment: JsonObject, project_id: str, event_id: str, at: datetime
) -> list[tuple[str, Row]]:
    """The task, its template (``customTask``) and its external link, where present."""
    link = assignment.get("externalLinkData")
    template = assignment.get("customTask")
    task = row_from(
        TASKS,
        assignment,
        link_id=as_id(link.get("linkId"), "linkId") if isinstance(link, dict) else None,
        **lineage(event_id, at),
    )
    if task["assignment_id"] is None:
        raise PayloadError("task assignment without assignmentId")
    if task["project_id"] is None:
        task["project_id"] = project_id
    rows: list[tuple[str, Row]] = [(TASKS.name, task)]
    # A template or link is there only with an id (``as_id``: an empty one is none): their
    # tables are keyed by it, and would refuse the row while the task's went on.
    if isinstance(template, dict) and as_id(template.get("taskId"), "taskId") is not None:
        rows.append(
            (
                TASK_TEMPLATES.name,
                row_from(
                    TASK_TEMPLATES,
                    template,
                    renames={"is_default": "default", "allow_resubmit": "allowReSubmit"},
                    **lineage(event_id, at),
                ),
            )
        )
    if isinstance(link, dict) and task["link_id"] is not None:
        rows.append(
            (
                EXTERNAL_LINKS.name,
                row_from(
                    EXTERNAL_LINKS,
                    link,
                    assignment_id=task["assignment_id"],
                    project_id=task["project_id"],
                    **lineage(event_id, at),
                ),
            )
        )
    return rows


def video_row(item: JsonObject, project_id: str, event_id: str, at: datetime) -> Row:
    identifier = item.get("videoCollaborationId", item.get("id"))
    row = row_from(
        VIDEO_COLLAB,
        item,
        video_collaboration_id=as_id(identifier, "videoCollaborationId"),
        project_id=project_id,
        **lineage(event_id, at),
    )
    if row["video_collaboration_id"] is None:
        raise PayloadError("video collaboration without videoCollaborationId or id")
    return row


def _object(value: Any, what: str) -> JsonObject:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} is a {type(value).__name__}, not an object")
    return value
