"""The raw ClaimX event (CLAIMX_DOMAIN.md §1) and its identity.

Producers disagree on spelling (snake_case or camelCase, ids as numbers or strings); the event is
normalised here once so that the same event always reads, and hashes, the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from claimx_flow.models.parsing import MalformedMessageError, load_json_object, reason_from
from claimx_flow.models.types import ClaimxId, UtcDateTime, normalise_id, utc_iso

# ClaimX events are a few hundred bytes. Parsing a message far beyond that costs memory and CPU
# for nothing the pipeline keeps (only the identity fields travel on), so it is refused unread.
MAX_EVENT_BYTES = 1024 * 1024

EventType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _aliases(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names))


class RawEvent(BaseModel):
    """One event from ``claimx.events.raw``, normalised; ``raw_data`` keeps what was sent.

    Unknown event types are accepted: the enrichment handlers classify them (and dead-letter
    them as ``UNKNOWN_EVENT_TYPE``), so nothing is lost at parse time.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    # Declared before event_id: its validator reads them to derive the id.
    event_type: EventType = _aliases("event_type", "eventType")
    project_id: ClaimxId = _aliases("project_id", "projectId")
    ingested_at: UtcDateTime = _aliases("ingested_at", "ingestedAt", "IngestionTime")
    media_id: ClaimxId | None = Field(None, validation_alias=AliasChoices("media_id", "mediaId"))
    task_assignment_id: ClaimxId | None = Field(
        None, validation_alias=AliasChoices("task_assignment_id", "taskAssignmentId")
    )
    video_collaboration_id: ClaimxId | None = Field(
        None, validation_alias=AliasChoices("video_collaboration_id", "videoCollaborationId")
    )
    master_file_name: ClaimxId | None = Field(
        None, validation_alias=AliasChoices("master_file_name", "masterFileName")
    )
    event_id: str = Field(
        None, validation_alias=AliasChoices("event_id", "eventId"), validate_default=True
    )
    # What from_source was given, kept as is: a decoded JSON object needs no checking, and
    # validating it copied every event a second time (~1 us per event).
    raw_data: SkipValidation[dict[str, Any] | None] = None

    @field_validator("event_id", mode="before")
    @classmethod
    def _given_or_derived(cls, value: Any, info: ValidationInfo) -> str:
        if value is not None:
            return normalise_id(value)
        fields = info.data  # read once, tested without a generator: this runs on most events
        if "project_id" not in fields or "event_type" not in fields or "ingested_at" not in fields:
            return ""  # validation of those fields already failed; that error is reported
        return derive_event_id(fields)

    @classmethod
    def from_source(cls, source: Mapping[str, Any]) -> Self:
        """Validate a decoded source object, keeping all of it (unknown fields too) as raw_data."""
        return cls._validate_owned(dict(source))

    @classmethod
    def _validate_owned(cls, document: dict[str, Any]) -> Self:
        """``from_source`` of a document nobody else holds (so not copied first)."""
        try:
            return cls.model_validate({**document, "raw_data": document})
        except ValidationError as exc:
            raise MalformedMessageError(reason_from(exc, cls)) from None

    @classmethod
    def from_kafka(cls, value: bytes | None) -> Self:
        """Parse a ``claimx.events.raw`` message value; raises ``MalformedMessageError``."""
        if value is None:
            raise MalformedMessageError("empty message (no value)")
        if len(value) > MAX_EVENT_BYTES:
            raise MalformedMessageError(
                f"message of {len(value)} bytes over the limit of {MAX_EVENT_BYTES} for an event"
            )
        return cls._validate_owned(load_json_object(value))


def derive_event_id(fields: Mapping[str, Any]) -> str:
    """sha256 hex of ``project_id|event_type|ingested_at(ISO, UTC)|media_id|…`` (§1).

    Never from the clock: the same event must get the same id on every replay and restart, or
    deduplication breaks. ``fields`` holds normalised values (a validated event's fields).
    Spelled out field by field rather than looped over the names: it runs for most ingested
    events, and the loop cost twice as much.
    """
    get = fields.get
    at = get("ingested_at")
    return event_id_of(
        _part(get("project_id")),
        _part(get("event_type")),
        "" if at is None else utc_iso(at),
        _part(get("media_id")),
        _part(get("task_assignment_id")),
        _part(get("video_collaboration_id")),
        _part(get("master_file_name")),
    )


def event_id_of(
    project_id: str,
    event_type: str,
    ingested_iso: str,
    media_id: str,
    task_assignment_id: str,
    video_collaboration_id: str,
    master_file_name: str,
) -> str:
    """``derive_event_id`` of parts already spelled as text (an absent one as ``""``), for a
    caller that holds them so: the ingest hot path has the instant's text at hand."""
    text = "|".join(
        (
            project_id,
            event_type,
            ingested_iso,
            media_id,
            task_assignment_id,
            video_collaboration_id,
            master_file_name,
        )
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _part(value: Any) -> str:
    return "" if value is None else value if type(value) is str else str(value)
