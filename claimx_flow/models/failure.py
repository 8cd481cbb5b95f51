"""The failure metadata every retry and DLQ record carries (CLAIMX_DOMAIN.md §4).

One envelope type, one constructor (``FailureInfo.from_reason``), the clock read in one place.
It travels as Kafka headers beside the original message, which stays byte-for-byte unchanged,
so a replay sends exactly what was first received.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from claimx_flow.catalog import StageName
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.models.parsing import loose_text, reason_from
from claimx_flow.models.redaction import encodable, redact_credentials, truncate
from claimx_flow.models.types import (
    MAX_INT64,
    MAX_KAFKA_PARTITION,
    MAX_TOPIC_CHARS,
    ClaimxId,
    UtcDateTime,
    utc_now,
)

HEADER_PREFIX = "claimx."
MAX_CLASS_CHARS = 200
"""An error class is a type's name; one read from a header is kept to this many characters."""

Headers = list[tuple[str, bytes]]


class MalformedHeadersError(ClaimxError, ValueError):
    """Failure headers that are present but cannot be read; ``reason`` names the header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MessageOrigin:
    """Where a failed message was read: enough to find it again in Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None = None


class FailureInfo(BaseModel):
    """Why and where a message failed, how often, and when it may be tried again.

    ``error_message`` is always credential-redacted and bounded, however the envelope is built.
    Every field is bounded, since headers come from other producers too: a count or offset past
    Kafka's ``long`` is a malformed header, not a number that breaks the next envelope written
    from it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    original_topic: str = Field(min_length=1, max_length=MAX_TOPIC_CHARS)
    original_partition: int = Field(ge=0, le=MAX_KAFKA_PARTITION)
    original_offset: int = Field(ge=0, le=MAX_INT64)
    original_timestamp: UtcDateTime | None = None
    stage: StageName
    error_category: ErrorCategory
    error_class: str = Field(min_length=1)
    error_message: str
    attempt: int = Field(ge=0, le=MAX_INT64)
    """Failures so far; 0 after a replay, so the next failure starts at the first tier."""
    first_failed_at: UtcDateTime
    last_failed_at: UtcDateTime
    due_at: UtcDateTime | None = None
    project_id: ClaimxId | None = None
    event_id: ClaimxId | None = None
    media_id: ClaimxId | None = None
    replay_count: int = Field(0, ge=0, le=MAX_INT64)

    @field_validator("error_message")
    @classmethod
    def _safe_message(cls, value: str) -> str:
        return truncate(redact_credentials(encodable(value)))

    @field_validator("error_class")
    @classmethod
    def _short_class(cls, value: str) -> str:
        return truncate(value, MAX_CLASS_CHARS)

    # Building one ----------------------------------------------------------------------------

    @classmethod
    def from_reason(
        cls,
        reason: str,
        *,
        error_class: str,
        origin: MessageOrigin,
        stage: StageName,
        category: ErrorCategory,
        previous: FailureInfo | None = None,
        due_at: datetime | None = None,
        ids: MessageIds | None = None,
        now: datetime | None = None,
    ) -> Self:
        """A failure: ``reason`` (an exception's message or a code's, ``UNKNOWN_EVENT_TYPE``) and
        ``error_class`` (the exception's type name, or the code) as the failure router gives them.

        With ``previous``, the attempt count goes up, the first failure time and replay count
        carry over and unknown ids are taken from it; the origin stays the one first recorded.
        """
        at = now or utc_now()
        ids = ids or MessageIds()
        if previous is not None:
            ids = ids.or_else(previous.ids)
        return cls(
            original_topic=previous.original_topic if previous else origin.topic,
            original_partition=previous.original_partition if previous else origin.partition,
            original_offset=previous.original_offset if previous else origin.offset,
            original_timestamp=previous.original_timestamp if previous else origin.timestamp,
            stage=stage,
            error_category=category,
            error_class=error_class,
            error_message=reason,
            attempt=min(previous.attempt + 1, MAX_INT64) if previous else 1,
            first_failed_at=previous.first_failed_at if previous else at,
            last_failed_at=at,
            due_at=due_at,
            project_id=ids.project_id,
            event_id=ids.event_id,
            media_id=ids.media_id,
            replay_count=previous.replay_count if previous else 0,
        )

    @property
    def ids(self) -> MessageIds:
        return MessageIds(self.project_id, self.event_id, self.media_id)

    @property
    def origin(self) -> MessageOrigin:
        return MessageOrigin(
            self.original_topic,
            self.original_partition,
            self.original_offset,
            self.original_timestamp,
        )

    # Kafka headers -------------------------------------------------------------------------

    def to_headers(self) -> Headers:
        """One ``claimx.<field>`` header per field that has a value, as UTF-8 text."""
        return [
            (HEADER_PREFIX + name, _header_text(value).encode("utf-8", "backslashreplace"))
            for name, value in self
            if value is not None
        ]

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes | str | None]] | None) -> Self:
        """Read the envelope back, ignoring headers that are not ours.

        Raises ``MalformedHeadersError`` naming the header when one is missing, repeated, not
        UTF-8 or not a valid value.
        """
        values = _our_headers(headers)
        if not values:
            raise MalformedHeadersError("no failure headers (claimx.*) on the message")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise MalformedHeadersError(_header_reason(exc)) from None

    @classmethod
    def maybe_from_headers(
        cls, headers: Iterable[tuple[str, bytes | str | None]] | None
    ) -> Self | None:
        """The envelope if the message has failed before, ``None`` if it carries none."""
        headers = list(headers or ())
        if not _our_headers(headers):
            return None
        return cls.from_headers(headers)


@dataclass(frozen=True)
class MessageIds:
    """The domain ids a failed message is about, for filtering a DLQ without parsing it."""

    project_id: str | None = None
    event_id: str | None = None
    media_id: str | None = None

    @classmethod
    def in_fields(cls, fields: Mapping[str, Any]) -> MessageIds:
        """The ids a message's JSON fields name (a task's ``source_event_id`` is its event's),
        read loosely: what a DLQ listing or a trace falls back on where headers lack them."""
        return cls(
            loose_text(fields.get("project_id")),
            loose_text(fields.get("event_id") or fields.get("source_event_id")),
            loose_text(fields.get("media_id")),
        )

    def or_else(self, other: MessageIds) -> MessageIds:
        return MessageIds(
            self.project_id or other.project_id,
            self.event_id or other.event_id,
            self.media_id or other.media_id,
        )


def replace_failure_headers(
    headers: Iterable[tuple[str, bytes | None]] | None, info: FailureInfo
) -> list[tuple[str, bytes | None]]:
    """The message's other headers unchanged, and ``info`` in place of any earlier envelope.

    Kafka keeps every header it is given, so without the replacing a message that failed
    twice would carry two envelopes.
    """
    kept = [(name, value) for name, value in headers or () if _field_of(name) is None]
    return [*kept, *info.to_headers()]


_FIELDS = frozenset(FailureInfo.model_fields)


def _field_of(header: str) -> str | None:
    """The envelope field a header carries, or ``None`` for headers that are not ours."""
    if not header.startswith(HEADER_PREFIX):
        return None
    name = header.removeprefix(HEADER_PREFIX)
    return name if name in _FIELDS else None


def _our_headers(headers: Iterable[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for header, raw in headers or ():
        field = _field_of(header)
        if field is None:
            continue
        if field in values:
            raise MalformedHeadersError(f"header {header} appears more than once")
        if raw is None:
            raise MalformedHeadersError(f"header {header} has no value")
        try:
            values[field] = raw if isinstance(raw, str) else raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedHeadersError(f"header {header} is not UTF-8") from None
    return values


def _header_text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _header_reason(error: ValidationError) -> str:
    return reason_from(error, noun="header", prefix=HEADER_PREFIX)
