"""What a trace looks for and what it finds: Kafka records and Delta rows about one thing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from claimx_flow.kafka.records import message_headers, moment_of_ms
from claimx_flow.models import FailureInfo, MalformedHeadersError, MessageIds, RawEvent
from claimx_flow.models.parsing import MalformedMessageError, json_fields, named_fields
from claimx_flow.trace.roles import PIPELINE_ORDER, Role, TopicRole

TargetKind = Literal["event", "project", "media"]

HIDDEN = "(presigned URL, hidden)"
SECRET_FIELDS = frozenset({"download_url", "full_download_link"})
"""Presigned URLs work as credentials: a trace never prints them."""


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    id: str

    def matches(self, ids: MessageIds) -> bool:
        if self.kind == "event":
            return ids.event_id == self.id
        if self.kind == "project":
            return ids.project_id == self.id
        return ids.media_id == self.id

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True)
class Found:
    """One Kafka record about the target."""

    where: TopicRole
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    ids: MessageIds
    fields: dict[str, Any]
    failure: FailureInfo | None = None
    processed: bool | None = None
    """Whether the stage that reads the topic has committed past the record (None: unknown)."""

    @property
    def role(self) -> Role:
        return self.where.role

    @property
    def topic(self) -> str:
        return self.where.topic

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def sort_key(self) -> tuple[float, int, int]:
        at = self.timestamp.timestamp() if self.timestamp else float("-inf")
        return at, PIPELINE_ORDER[self.role], self.offset


@dataclass(frozen=True)
class TableRow:
    """One Delta row about the target."""

    table: str
    row: dict[str, Any]

    def text(self, column: str) -> str | None:
        value = self.row.get(column)
        return None if value is None else str(value)


@dataclass
class Evidence:
    """What Delta holds about the trace's events and files, read whole: the rows a trace shows
    are capped, and a verdict taken from a capped list would call a stored file missing."""

    stored_media: set[str] = field(default_factory=set)
    """Media ids with a ``claimx_attachments`` row."""
    written_by: dict[str, set[str]] = field(default_factory=dict)
    """Event id → the enriched tables holding a row that event last changed."""


@dataclass
class Trace:
    target: Target
    since: datetime
    until: datetime
    records: list[Found] = field(default_factory=list)
    rows: list[TableRow] = field(default_factory=list)
    scanned: int = 0
    skipped: int = 0
    """Messages in the window left unread because of ``--limit``."""
    limit: int = 0
    stalled: list[str] = field(default_factory=list)
    """Partitions given up on because they sent nothing for a while: left partly unread."""
    notes: list[str] = field(default_factory=list)
    evidence: Evidence = field(default_factory=Evidence)

    def rows_of(self, table: str) -> list[TableRow]:
        return [r for r in self.rows if r.table == table]


# Reading one record ---------------------------------------------------------------------------


def safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: HIDDEN if k in SECRET_FIELDS and v else v for k, v in fields.items()}


def read_record(where: TopicRole, message: Message) -> Found:
    """The record as a trace sees it: its ids from the failure headers, completed from the
    body (a raw event's id may be derived, so raw events are parsed as the ingester does)."""
    value = message.value()
    failure: FailureInfo | None = None
    try:
        failure = FailureInfo.maybe_from_headers(message_headers(message))
    except MalformedHeadersError:
        failure = None
    fields: dict[str, Any]
    if where.role in (Role.RAW, Role.EVENTS_DLQ):
        try:
            event = RawEvent.from_kafka(value)
            fields = event.model_dump(mode="json", exclude={"raw_data"})
        except MalformedMessageError:  # its ids as the event spells them (``eventId``…)
            fields = named_fields(json_fields(value), RawEvent)
    else:
        fields = json_fields(value)
    from_body = MessageIds.in_fields(fields)
    ids = failure.ids.or_else(from_body) if failure else from_body
    kind, millis = message.timestamp()
    key = message.key()
    return Found(
        where=where,
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=None if kind == TIMESTAMP_NOT_AVAILABLE else moment_of_ms(millis),
        key=key.decode("utf-8", "replace") if key is not None else None,
        ids=ids,
        fields=safe_fields(fields),
        failure=failure,
    )


def mentions(message: Message, needles: tuple[bytes, ...]) -> bool:
    """Whether the record's bytes contain any needle: a cheap test before parsing it."""
    if not needles:
        return True
    value = message.value() or b""
    if any(n in value for n in needles):
        return True
    for _, raw in message_headers(message):
        data = raw.encode() if isinstance(raw, str) else raw or b""
        if any(n in data for n in needles):
            return True
    return False
