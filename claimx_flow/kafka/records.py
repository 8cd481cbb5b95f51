"""Kafka records as the domain sees them, free of any client or runtime types.

A consumed record keeps where it came from (topic, partition, offset, timestamp), so a failure
can always name the exact message it is about; an outbound record says where it goes.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

Headers = Sequence[tuple[str, bytes]]


UNREADABLE_HEADERS = "a header name is not UTF-8; the message's headers cannot be read"


_HEADERS = operator.methodcaller("headers")


def raw_headers(message: Any) -> list[tuple[str, bytes | None]] | None:
    """A consumed message's headers as the client gives them, or None when it cannot.

    The client decodes header names as UTF-8, and on one that is not (a producer outside
    Python can send one) it returns a list holding a NULL with the decoding error still set
    (``c_headers_to_py`` in confluent-kafka's ``confluent_kafka.c``). Called as
    ``message.headers()`` in a hot loop, Python 3.11's specialised call skips the check that
    turns that into a ``SystemError``: the broken list comes back, and touching it crashes the
    process. Called through ``methodcaller`` the check always runs, so the message is told
    apart (``tests/poison/test_ingest_boundary.py`` reads hundreds of them). Whoever reads
    such a message must go on: a stage dead-letters it (``UNREADABLE_HEADERS``), a tool shows
    it without headers. The client keeps the broken list for the next call, so it is replaced
    at once with an empty one: a second reader of the same message gets no headers.
    """
    try:
        headers = _HEADERS(message)
    except (SystemError, UnicodeDecodeError):
        message.set_headers([])
        return None
    return headers or []


def message_headers(message: Any) -> list[tuple[str, bytes | str | None]]:
    """``raw_headers`` for the tools that show messages: none when they cannot be read."""
    headers = raw_headers(message) or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def kafka_millis(moment: datetime) -> int:
    """``moment`` as the epoch milliseconds a Kafka look-up by time takes. One before 1970 is
    0, the first instant a record can have: Kafka reads -1 as "the latest offset" and -2 as
    "the earliest", so a negative time would answer for the wrong end."""
    return max(0, int(moment.timestamp() * 1000))


def moment_of_ms(ms: int) -> datetime | None:
    """A Kafka timestamp (epoch milliseconds) as a UTC instant, or None when it names no moment
    a datetime can hold with room for a delay added (years 1-9998).

    A message's timestamp comes from its producer's clock, which may write anything (a producer
    that sent microseconds as milliseconds, say); whoever reads it must not stop on it.
    """
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):  # OSError: past the C library's time_t
        return None
    return moment if 1 <= moment.year <= 9998 else None


class KafkaRecord(NamedTuple):
    """One message read from Kafka.

    A named tuple, not a frozen dataclass: one is made for every message a stage reads, and a
    frozen dataclass's ``__init__`` cost about 1.1 us where this costs 0.4 us.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    error: str | None = None
    """Set when the Kafka client could not read the message (corrupt, not decompressible: it
    has no value, only a place) or its headers (a header name that is not UTF-8: it keeps its
    value, without headers). Either way it belongs in a DLQ."""

    @property
    def position(self) -> str:
        """``topic[partition]@offset``: how logs and errors name the message."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def created_at(self) -> datetime | None:
        """The message's timestamp as a UTC instant (``moment_of_ms``); None without one."""
        return None if self.timestamp_ms is None else moment_of_ms(self.timestamp_ms)


class OutboundRecord(NamedTuple):
    """One message to write to Kafka (a named tuple for the reason ``KafkaRecord`` is)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Records read together from one partition, in offset order: the unit a batched stage
    takes, so the dataflow moves one item per batch instead of one per message.

    ``part`` names the partition the way the dataflow's input does (``<partition>-<topic>``):
    outputs written under the same name stay on the worker that read them.
    """

    part: str
    records: list[KafkaRecord]
