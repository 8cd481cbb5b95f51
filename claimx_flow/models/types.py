"""Field types shared by every message: ClaimX ids and UTC instants.

Producers send ids as numbers or strings and timestamps with or without an offset; normalising
both at the edge means everything downstream compares, hashes and keys on one spelling.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

MAX_ID_CHARS = 256
MAX_INT64 = 2**63 - 1
"""The largest count, offset or size a message may carry: Delta's and Kafka's ``long``. A
larger number from outside is a bad value, refused where it is read, not an overflow in Arrow,
Prometheus or the next header written from it."""
MAX_KAFKA_PARTITION = 2**31 - 1
"""Kafka numbers partitions with a Java ``int``."""
MAX_TOPIC_CHARS = 249
"""Kafka's longest topic name (``Topic.MAX_NAME_LENGTH`` in Kafka's
``clients/.../common/internals/Topic.java``)."""
_UNPRINTABLE = frozenset({"Cc", "Cs"})


def utc_now() -> datetime:
    """The one clock of the domain models, so tests and constructors agree on "now"."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (ClaimX and Kusto write UTC); aware ones are converted.

    An instant at the edge of the calendar (``9999-12-31T23:59-12:00``) has no UTC form; that
    is a bad value in the message, not a crash of the stage reading it.
    """
    zone = value.tzinfo
    if zone is UTC:
        return value
    if zone is None or not value.utcoffset():  # naive, or UTC under another name (``Z``)
        return with_utc(value)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "out of range in UTC") from None


def with_utc(value: datetime) -> datetime:
    """``value.replace(tzinfo=UTC)`` (fold and all) at a third of its cost: Python 3.11's
    ``replace`` parses its keywords on every call (0.9 us), and every message carries an
    instant that pydantic-core reads with a zone of its own, to be relabelled. A subclass of
    ``datetime`` keeps ``replace``, which keeps its class."""
    if type(value) is not datetime:
        return value.replace(tzinfo=UTC)
    return datetime.combine(value.date(), value.time(), UTC)


def normalise_id(value: Any) -> str:
    """``97138881``, ``97138881.0`` and ``"97138881"`` are the same id: ``"97138881"``.

    Booleans, fractional numbers and empty strings are not ids; accepting them would silently
    key two different things the same way.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            raise PydanticCustomError("id_value", "must not be empty")
        # Printable text holds no Cc or Cs at all; the per-character scan is for the rest.
        if not stripped.isprintable() and _has_unprintable(stripped):
            # Ids become Kafka keys, Delta values and path segments: text that cannot be
            # encoded (lone surrogates) or that hides (control characters) is not an id.
            raise PydanticCustomError("id_value", "contains control or unencodable characters")
        return _bounded(stripped)
    if isinstance(value, bool):
        raise PydanticCustomError("id_type", "must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return _bounded(str(value))
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("id_value", "must be a whole number")
        return _bounded(str(int(value)))  # 1e308 is "whole" and 309 digits long
    raise PydanticCustomError(
        "id_type", "must be a string or an integer, not {kind}", {"kind": type(value).__name__}
    )


def _has_unprintable(text: str) -> bool:
    """Whether ``text`` has a control character or a lone surrogate.

    ``str.isprintable`` is stricter (it also refuses format characters and separators such as
    U+200B or U+00A0, which ids may hold), so only its "no" needs this slower answer.
    """
    return any(unicodedata.category(char) in _UNPRINTABLE for char in text)


def _bounded(text: str) -> str:
    if len(text) > MAX_ID_CHARS:
        raise PydanticCustomError(
            "id_value", "longer than {limit} characters", {"limit": MAX_ID_CHARS}
        )
    return text


def utc_iso(value: datetime) -> str:
    """``value.isoformat()``, a fifth faster for a UTC instant (date and time written apart,
    the offset as text); every message and event id writes one or two of them."""
    if value.tzinfo is UTC:
        return f"{value.date().isoformat()}T{value.time().isoformat()}+00:00"
    return value.isoformat()


ClaimxId = Annotated[str, BeforeValidator(normalise_id)]
"""An id as ClaimX sends it (number or string), held as a non-empty string."""

UtcDateTime = Annotated[
    datetime, AfterValidator(as_utc), PlainSerializer(utc_iso, return_type=str, when_used="json")
]
"""A timezone-aware UTC instant, written as ISO 8601 with its ``+00:00`` offset."""
