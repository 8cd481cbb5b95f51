"""A raw event's fields read in one pydantic-core pass, for the ingest stage's hot path.

``RawEvent`` reads an event with Python validators on every id and instant, about 15 us per
event. Most events need none of them: ids that are already clean strings or integers, an
instant with an offset. ``read_event_fields`` validates such an event against a schema of
native types only (a ``TypedDict`` compiled once, about 1.4 us per event measured on this
machine, where one ``validate_json`` over the batch as a JSON array took 1.9 us per event with
the join), then applies the few normalisations ``RawEvent`` would in plain Python.

The instant is read as text and parsed by ``datetime.fromisoformat`` when it has the usual
spelling (``2024-01-01T00:00:00.004Z``): pydantic-core's datetime took about 1.7 us of the
pass, and the text gives the instant's UTC form for the event id and the task without
formatting it twice.

Anything that schema does not take as it is, or that a normalisation would have to judge
(whitespace to strip from an id, an unprintable character, a float id, an instant in another
spelling or with no UTC form), is read by ``RawEvent`` instead, so the answer, and the reason
for a refusal, are always ``RawEvent``'s: ``tests/test_event_fields.py`` checks the two agree
on generated events and on generated instants near the usual spelling.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, NotRequired, cast

from pydantic import AliasChoices, Field, Strict, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from claimx_flow.models.events import MAX_EVENT_BYTES, RawEvent, event_id_of
from claimx_flow.models.types import MAX_ID_CHARS, as_utc, utc_iso


class EventFields(TypedDict):
    """An event's normalised fields, as ``RawEvent`` holds them (without ``raw_data``)."""

    event_id: str
    event_type: str
    project_id: str
    media_id: str | None
    task_assignment_id: str | None
    video_collaboration_id: str | None
    master_file_name: str | None
    ingested_at: datetime
    ingested_iso: str
    """``ingested_at`` as the event id and the enrichment task spell it (``utc_iso``)."""


def read_event_fields(value: bytes | None) -> EventFields:
    """The fields of a ``claimx.events.raw`` message; raises ``MalformedMessageError`` with
    ``RawEvent``'s reason when it is not an event."""
    if value is not None and len(value) <= MAX_EVENT_BYTES:
        try:
            fields = _clean(_SIMPLE.validate_json(value))
        except (ValidationError, ValueError):
            fields = None
        if fields is not None:
            return fields
    return fields_of(RawEvent.from_kafka(value))


def fields_of(event: RawEvent) -> EventFields:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "project_id": event.project_id,
        "media_id": event.media_id,
        "task_assignment_id": event.task_assignment_id,
        "video_collaboration_id": event.video_collaboration_id,
        "master_file_name": event.master_file_name,
        "ingested_at": event.ingested_at,
        "ingested_iso": utc_iso(event.ingested_at),
    }


_Text = Annotated[str, Strict()]
_Int = Annotated[int, Strict()]
_Id = _Text | _Int
_EventType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _alias(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names))


class _Simple(TypedDict):
    """An event with native types only: ids as strings or integers, a parseable instant."""

    event_id: Annotated[NotRequired[_Id | None], _alias("event_id", "eventId")]
    event_type: Annotated[_EventType, _alias("event_type", "eventType")]
    project_id: Annotated[_Id, _alias("project_id", "projectId")]
    ingested_at: Annotated[_Text | datetime, _alias("ingested_at", "ingestedAt", "IngestionTime")]
    media_id: Annotated[NotRequired[_Id | None], _alias("media_id", "mediaId")]
    task_assignment_id: Annotated[
        NotRequired[_Id | None], _alias("task_assignment_id", "taskAssignmentId")
    ]
    video_collaboration_id: Annotated[
        NotRequired[_Id | None], _alias("video_collaboration_id", "videoCollaborationId")
    ]
    master_file_name: Annotated[
        NotRequired[_Id | None], _alias("master_file_name", "masterFileName")
    ]


_SIMPLE = TypeAdapter(_Simple)

_JUDGE = ""
"""What ``_id`` answers for an id it leaves to ``RawEvent``: no id is empty."""


def _clean(doc: _Simple) -> EventFields | None:
    """``RawEvent``'s normalisations of a simple event, or None when one has a judgement to
    make (then ``RawEvent`` reads the event and gives its answer)."""
    get = cast("dict[str, Any]", doc).get
    project_id = _id(doc["project_id"])
    media_id = _optional_id(get("media_id"))
    task_assignment_id = _optional_id(get("task_assignment_id"))
    video_collaboration_id = _optional_id(get("video_collaboration_id"))
    master_file_name = _optional_id(get("master_file_name"))
    if _JUDGE in (project_id, media_id, task_assignment_id, video_collaboration_id):
        return None
    if master_file_name == _JUDGE:
        return None
    at = doc["ingested_at"]
    instant = _instant(at) if isinstance(at, str) else _as_utc(at)
    if instant is None:
        return None
    ingested_at, ingested_iso = instant
    event_id = get("event_id")
    fields: EventFields = {
        "event_id": (
            event_id_of(
                project_id,
                doc["event_type"],
                ingested_iso,
                media_id or "",
                task_assignment_id or "",
                video_collaboration_id or "",
                master_file_name or "",
            )
            if event_id is None
            else _id(event_id)
        ),
        "event_type": doc["event_type"],
        "project_id": project_id,
        "media_id": media_id,
        "task_assignment_id": task_assignment_id,
        "video_collaboration_id": video_collaboration_id,
        "master_file_name": master_file_name,
        "ingested_at": ingested_at,
        "ingested_iso": ingested_iso,
    }
    return fields if fields["event_id"] else None


_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,6}))?"
    r"(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"  # fromisoformat also takes +00:60 as an hour
)
"""The spellings of an instant read here; pydantic-core reads every other one (through
``RawEvent``). An instant was a quarter of the cost of reading an event there."""

_UTC_ZONES = frozenset({None, "Z", "+00:00", "-00:00"})


def _instant(text: str) -> tuple[datetime, str] | None:
    """The instant a text spells and its ``utc_iso``, as ``RawEvent`` reads it, or None for a
    text ``RawEvent`` must judge: another spelling, or no such day or time."""
    spelled = _INSTANT.fullmatch(text)
    if spelled is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    fraction, zone = spelled.groups()
    if zone not in _UTC_ZONES:
        return _as_utc(instant)
    # utc_iso's text from the text itself: microseconds in six digits, none when zero.
    micros = f".{fraction:0<6}" if fraction and fraction.strip("0") else ""
    return as_utc(instant), f"{text[:19]}{micros}+00:00"


def _as_utc(instant: datetime) -> tuple[datetime, str] | None:
    try:
        utc = as_utc(instant)
    except PydanticCustomError:  # no UTC form: RawEvent says so
        return None
    return utc, utc_iso(utc)


def _optional_id(value: str | int | None) -> str | None:
    return None if value is None else _id(value)


def _id(value: str | int) -> str:
    """The id as ``normalise_id`` would give it, or ``_JUDGE`` for one it must judge itself
    (whitespace to strip, an unprintable character, too long, empty)."""
    if type(value) is str:
        if value.isprintable() and value.strip() is value and len(value) <= MAX_ID_CHARS:
            return value
        return _JUDGE
    text = str(value)
    return text if len(text) <= MAX_ID_CHARS else _JUDGE
