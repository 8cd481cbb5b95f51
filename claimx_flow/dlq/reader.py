"""Reading a DLQ topic into typed ``DeadLetter`` records, between offsets fixed up front.

A read always stops at the high watermark seen when it started, so a replay never chases the
failures its own replays cause, and a listing of a busy DLQ ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message, TopicPartition

from claimx_flow.dlq.clients import DlqError
from claimx_flow.kafka.partitions_left import PartitionsLeft
from claimx_flow.kafka.records import message_headers, moment_of_ms
from claimx_flow.models import FailureInfo, MalformedHeadersError, MessageIds, RawEvent
from claimx_flow.models.parsing import json_fields, loose_text, named_fields
from claimx_flow.routing.failures import TRUNCATED_HEADER

RawHeaders = list[tuple[str, bytes | None]]

# A partition that yields nothing for this long while offsets remain below its end is stuck.
IDLE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ record: where it sits, what it holds, and why it failed (if its headers say)."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: RawHeaders
    failure: FailureInfo | None
    failure_error: str | None = None  # why ``claimx.*`` headers present could not be read

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @cached_property
    def value_fields(self) -> dict[str, Any]:
        """The value's top-level JSON fields, or nothing: a fallback for ids and the event type.

        A DLQ holds what could not be read, so this reads anything, nested past any depth. A
        raw event's fields are also under their snake_case names whichever spelling its
        producer used (``RawEvent``'s aliases: ``projectId``, ``eventType``…), so filters and
        columns see a camelCase event's ids too."""
        return named_fields(json_fields(self.value), RawEvent)

    @property
    def ids(self) -> MessageIds:
        """Ids from the failure headers, completed from the message body where they are absent."""
        from_value = MessageIds.in_fields(self.value_fields)
        return self.failure.ids.or_else(from_value) if self.failure else from_value

    @property
    def event_type(self) -> str | None:
        return loose_text(self.value_fields.get("event_type"))

    @property
    def replay_count(self) -> int:
        return self.failure.replay_count if self.failure else 0

    @property
    def truncated(self) -> bool:
        """Whether this is a cut copy (the original was too large for the DLQ): it says what
        the message was, but cannot be sent back as it."""
        return any(name == TRUNCATED_HEADER and data == b"true" for name, data in self.headers)


def dead_letter_from(message: Message) -> DeadLetter:
    headers: RawHeaders = [
        (name, value.encode() if isinstance(value, str) else value)
        for name, value in message_headers(message)
    ]
    failure, failure_error = None, None
    try:
        failure = FailureInfo.maybe_from_headers(headers)
    except MalformedHeadersError as exc:
        failure_error = exc.reason
    kind, millis = message.timestamp()
    return DeadLetter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=None if kind == TIMESTAMP_NOT_AVAILABLE else moment_of_ms(millis),
        key=message.key(),
        value=message.value(),
        headers=headers,
        failure=failure,
        failure_error=failure_error,
    )


def read_range(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    check: Callable[[], None] = lambda: None,
) -> Iterator[DeadLetter]:
    """Every record at ``starts[p] <= offset < ends[p]``, in offset order within a partition.

    Partitions are interleaved as the broker serves them. The consumer must have been made with
    ``enable.partition.eof`` (see ``clients.reader``), which also ends a partition whose tail is
    an open or aborted transaction. ``check`` runs before each fetch (a stop asked for raises
    there, while waiting on a quiet partition too).
    """
    wanted = sorted(p for p, start in starts.items() if start < ends[p])
    if not wanted:
        return
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in wanted])
    remaining = PartitionsLeft(consumer, {(topic, p): ends[p] for p in wanted}, IDLE_TIMEOUT_S)
    try:
        while remaining:
            check()
            for message in consumer.consume(500, 0.05):
                letter = _take(message, remaining)
                if letter is not None:
                    yield letter
            silent = remaining.idle()
            if silent:
                raise DlqError(
                    f"{topic}: no records arrive from partitions {[p for _, p in silent]}"
                )
    finally:
        consumer.unassign()


def _take(message: Message, remaining: PartitionsLeft) -> DeadLetter | None:
    place = (message.topic() or "", message.partition() or 0)
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            remaining.done(place)
            return None
        if error.retriable():  # the client retries on its own; the idle timeout bounds it
            return None
        raise DlqError(f"cannot read {place[0]}[{place[1]}]: {error.str()}")
    offset = message.offset() or 0
    if not remaining.heard(place, offset):
        return None
    if offset + 1 >= remaining.ends[place]:
        remaining.done(place)
    return dead_letter_from(message)
