"""Hypothesis strategies for poison: raw Kafka records (values, keys, headers, timestamps),
hostile API answers and media files, each tagged with what the pipeline must do with it.

A generated record is *good* (a valid event: it must land), *poison* (it can never be an
event: it must be dead-lettered) or *either* (an odd document the parser may accept or refuse:
it must end in exactly one place, the one the parser's verdict names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from hypothesis import strategies as st

from claimx_flow.lab.simulator.events import MIXED_WEIGHTS
from tests.poison.harness import RawRecord

Intent = Literal["good", "poison", "either"]

EVENT_TYPES = sorted(MIXED_WEIGHTS)
KNOWN_KEYS = {
    key.lower()
    for key in [
        *("event_id", "eventId", "event_type", "eventType", "project_id", "projectId"),
        *("ingested_at", "ingestedAt", "IngestionTime", "media_id", "mediaId", "raw_data"),
        *("task_assignment_id", "taskAssignmentId", "video_collaboration_id"),
        *("videoCollaborationId", "master_file_name", "masterFileName"),
    ]
}
OUR_HEADERS = [
    "claimx.original_topic",
    "claimx.original_partition",
    "claimx.original_offset",
    "claimx.original_timestamp",
    "claimx.stage",
    "claimx.error_category",
    "claimx.error_class",
    "claimx.error_message",
    "claimx.attempt",
    "claimx.first_failed_at",
    "claimx.last_failed_at",
    "claimx.due_at",
    "claimx.project_id",
    "claimx.event_id",
    "claimx.media_id",
    "claimx.replay_count",
    "claimx.truncated",
    "claimx.original_size",
    "claimx.original_sha256",
]
# Timestamps a producer may set: the whole int64 range, and the classic mistakes.
EDGE_TIMESTAMPS = [
    -(2**63) + 1,
    -1,
    1,
    1_700_000_000,  # seconds sent as milliseconds
    1_700_000_000_000_000,  # microseconds sent as milliseconds
    253_402_300_799_999,  # the last millisecond of year 9999
    253_402_300_800_000,  # the first of year 10000
    2**63 - 1,
]


@dataclass(frozen=True)
class Generated:
    """A record and what must become of it."""

    record: RawRecord
    intent: Intent
    label: str
    """How it was made (for failure messages and the report)."""


def _encode(document: Any) -> bytes:
    """JSON as any producer might write it: lone surrogates as escapes, NaN as ``NaN``."""
    return json.dumps(document, allow_nan=True).encode("utf-8")


# Values --------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec=None), max_size=24)
    | st.sampled_from(
        [
            "",
            " ",
            "\ud800",
            "\x00",
            "../..",
            "9" * 300,
            2**63,
            -(2**63) - 1,
            1e308,
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+14:00",
            "2024-02-30T00:00:00Z",
            1_700_000_000_000_000,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
clean_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)
clean_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | clean_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(clean_text, inner, max_size=3),
    max_leaves=8,
)
unknown_keys = clean_text.filter(lambda key: key.lower() not in KNOWN_KEYS)
EVENT_KEYS = st.sampled_from(
    [
        "event_type",
        "eventType",
        "project_id",
        "projectId",
        "ingested_at",
        "ingestedAt",
        "IngestionTime",
        "media_id",
        "mediaId",
        "event_id",
        "eventId",
        "task_assignment_id",
        "video_collaboration_id",
        "master_file_name",
        "raw_data",
        "colour",
    ]
)


def instants() -> st.SearchStrategy[str]:
    """An ``ingested_at`` in any spelling the parser must take: the whole calendar, any offset
    that keeps it inside the calendar in UTC, ``Z`` or an offset, with or without fractions."""
    offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    moments = st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
    )

    def spell(moment: datetime, zulu: bool, fraction: bool) -> str:
        moment = moment if fraction else moment.replace(microsecond=0)
        if zulu:
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return moment.isoformat()

    return st.builds(spell, moments, st.booleans(), st.booleans())


def _id() -> st.SearchStrategy[int | str]:
    number = st.integers(1, 10**15)
    return number | number.map(str)


@st.composite
def good_event(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid event with its own ``event_id``, in snake_case or camelCase, with unknown fields
    beside the known ones. Returns the bytes and the event id."""
    camel = draw(st.booleans())
    event_id = draw(st.uuids()).hex
    names = (
        ("eventId", "eventType", "projectId", "mediaId", "taskAssignmentId")
        if camel
        else ("event_id", "event_type", "project_id", "media_id", "task_assignment_id")
    )
    document: dict[str, Any] = {
        names[0]: event_id,
        names[1]: draw(st.sampled_from(EVENT_TYPES)),
        names[2]: draw(_id()),
        draw(st.sampled_from(["ingested_at", "ingestedAt", "IngestionTime"])): draw(instants()),
    }
    if draw(st.booleans()):
        document[names[3]] = draw(_id())
    if draw(st.booleans()):
        document[names[4]] = draw(_id())
    document.update(draw(st.dictionaries(unknown_keys, clean_json, max_size=3)))
    items = list(document.items())
    order = draw(st.permutations(range(len(items))))
    return _encode(dict(items[i] for i in order)), event_id


def _not_an_object(value: bytes) -> bool:
    """Whether ``value`` can never be an event, by the standard library's own reading."""
    try:
        return not isinstance(json.loads(value.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return True


poison_values: st.SearchStrategy[tuple[bytes | None, str]] = st.one_of(
    st.just((None, "no value")),
    st.binary(max_size=200).filter(_not_an_object).map(lambda v: (v, "bytes")),
    st.one_of(scalars, st.lists(json_values, max_size=4)).map(
        lambda v: (_encode(v), "not an object")
    ),
    st.integers(1, 4000).map(lambda n: (b"[" * n, "unclosed nesting")),
    st.integers(20_000, 120_000).map(lambda n: (b"[" * n + b"]" * n, "deep nesting")),
    st.integers(4301, 6000).map(lambda n: (b'{"project_id": ' + b"9" * n + b"}", "huge number")),
    st.builds(
        lambda event, cut: (event[0][: max(1, len(event[0]) * cut // 100)], "truncated event"),
        good_event(),
        st.integers(1, 95),
    ),
    st.builds(
        lambda event, at, junk: (event[0][:at] + junk + event[0][at:], "invalid UTF-8 inside"),
        good_event(),
        st.integers(1, 30),
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]),
    ),
    st.builds(
        lambda missing, document: (
            _encode({k: v for k, v in document.items() if k not in missing}),
            f"missing {sorted(missing)}",
        ),
        st.sets(
            st.sampled_from(["event_type", "project_id", "ingested_at"]), min_size=1, max_size=3
        ),
        st.fixed_dictionaries(
            {
                "event_type": st.sampled_from(EVENT_TYPES),
                "project_id": _id(),
                "ingested_at": instants(),
            },
            optional={"colour": json_values},
        ),
    ),
    st.builds(
        lambda field, bad: (
            _encode(
                {
                    "event_type": "PROJECT_CREATED",
                    "project_id": "5000001",
                    "ingested_at": "2024-01-01T00:00:00Z",
                    field: bad,
                }
            ),
            f"bad {field}={bad!r:.40}",
        ),
        st.sampled_from(["project_id", "media_id", "event_id", "task_assignment_id"]),
        st.sampled_from([True, 1.5, "", " ", "\ud800", "a\x00b", "9" * 257, {"id": 1}, [1]]),
    ),
)
"""Values that can never be an event (the label says why)."""

either_values = st.dictionaries(EVENT_KEYS, json_values, max_size=8).map(
    _encode
) | st.fixed_dictionaries(
    {
        "event_type": st.text(max_size=30) | scalars,
        "project_id": scalars,
        "ingested_at": scalars,
    },
    optional={"media_id": scalars, "event_id": scalars, "master_file_name": scalars},
).map(_encode)
"""Odd documents: the parser decides."""


# Everything else a record carries ------------------------------------------------------------

header_names = st.one_of(
    st.sampled_from(OUR_HEADERS),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
    st.sampled_from(["", "claimx.", "claimx.unknown", "CLAIMX.ATTEMPT", "content-type"]),
)
header_values = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.sampled_from(
        [b"\xff\xfe", b"-1", b"99999999999999999999999", b"nan", b"permanent", b"ingest", b""]
    ),
    st.datetimes().map(lambda d: d.isoformat().encode()),
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
READABLE_ENVELOPE = {
    "claimx.original_topic": b"elsewhere.claimx.events",
    "claimx.original_partition": b"0",
    "claimx.original_offset": b"7",
    "claimx.stage": b"ingest",
    "claimx.error_category": b"permanent",
    "claimx.error_class": b"MalformedMessageError",
    "claimx.error_message": b"invalid JSON",
    "claimx.attempt": b"1",
    "claimx.first_failed_at": b"2024-01-01T00:00:00+00:00",
    "claimx.last_failed_at": b"2024-01-01T00:00:00+00:00",
}
"""A whole failure envelope as a stage writes it: what a replayed or retried message carries."""


def envelope(**values: bytes) -> list[tuple[str, bytes | None]]:
    """``READABLE_ENVELOPE`` with some fields replaced (``original_topic=b"..."``)."""
    fields = {**READABLE_ENVELOPE, **{f"claimx.{name}": data for name, data in values.items()}}
    return list(fields.items())


_numbers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**31 - 1, 2**31, 2**63 - 2, 2**63 - 1, 2**63, 10**4300 - 1]),
    st.integers(19, 4300).map(lambda digits: 10**digits - 1),
).map(lambda number: str(number).encode())
_long_text = st.integers(1, 6000).map(lambda n: ("t" * n).encode())
_instants = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().encode()),
    st.sampled_from([b"9999-12-31T23:59:59+00:00", b"0001-01-01T00:00:00-23:59"]),
)
_hostile: dict[str, st.SearchStrategy[bytes]] = {
    "claimx.original_topic": _long_text,
    "claimx.original_partition": _numbers,
    "claimx.original_offset": _numbers,
    "claimx.error_class": _long_text,
    "claimx.error_message": _long_text,
    "claimx.attempt": _numbers,
    "claimx.replay_count": _numbers,
    "claimx.first_failed_at": _instants,
    "claimx.last_failed_at": _instants,
    "claimx.due_at": _instants,
    "claimx.original_timestamp": _instants,
}


@st.composite
def hostile_envelopes(draw: st.DrawFn) -> list[tuple[str, bytes | None]]:
    """A whole envelope with one to three fields at or past their edge: numbers past Kafka's
    ``long`` (up to Python's 4300-digit limit, where ``str`` of the next number fails), text
    longer than a topic name may be, instants at the ends of the calendar. Some stay readable
    (``2**63 - 1`` is a count a stage may still add one to); the rest must read as malformed."""
    chosen = draw(st.lists(st.sampled_from(sorted(_hostile)), min_size=1, max_size=3, unique=True))
    fields = dict(READABLE_ENVELOPE)
    for name in chosen:
        fields[name] = draw(_hostile[name])
    return list(fields.items())


headers = st.one_of(
    st.lists(st.tuples(header_names, header_values), max_size=8),
    st.tuples(
        hostile_envelopes(), st.lists(st.tuples(header_names, header_values), max_size=2)
    ).map(lambda parts: [*parts[0], *parts[1]]),
)
keys = st.one_of(st.none(), st.binary(max_size=40), st.sampled_from([b"", b"\xff" * 300]))
timestamps = st.one_of(
    st.none(),
    st.sampled_from(EDGE_TIMESTAMPS),
    st.integers(-(2**63) + 1, 2**63 - 1),
)


@st.composite
def raw_records(draw: st.DrawFn) -> Generated:
    """One raw Kafka record: a good event, poison or an odd document, with any key, headers
    and timestamp (those never make a good event bad)."""
    intent: Intent = draw(st.sampled_from(["good", "good", "poison", "poison", "either"]))
    if intent == "good":
        value, event_id = draw(good_event())
        label = f"good {event_id}"
    elif intent == "poison":
        value, label = draw(poison_values)
    else:
        value, label = draw(either_values), "odd document"
    record = RawRecord(
        value=value, key=draw(keys), headers=draw(headers), timestamp_ms=draw(timestamps)
    )
    return Generated(record, intent, label)
