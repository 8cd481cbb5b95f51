"""The raw-event boundary: generated Kafka records through a real ingest process.

Hypothesis makes a batch of records (good events, values that can never be events, odd
documents the parser decides on), each with any key, headers (our ``claimx.*`` names with
garbage too) and timestamp in the int64 range, plus records at the edge of the size limits.
They are produced to the raw topic as generated, ``python -m bytewax.run dataflows.ingest``
drains it once, and then each record must be exactly where it belongs: a good event in
``claimx_events`` with an enrichment task, anything else in the events DLQ once, with a
reason, its value intact (or its head, marked truncated with its size and sha256), and the
process must have ended by itself with 0.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.models import (
    EnrichmentTask,
    FailureInfo,
    MalformedHeadersError,
    MalformedMessageError,
    RawEvent,
)
from claimx_flow.models.events import MAX_EVENT_BYTES
from claimx_flow.routing.failures import ORIGINAL_SHA256_HEADER
from tests.isolation import isolated_settings
from tests.poison.checks import Findings, by_origin, check_dead_letter, no_duplicates
from tests.poison.harness import (
    BATCH,
    Placed,
    RawRecord,
    Read,
    StageExit,
    largest_accepted,
    poison_settings,
    produce_exact,
    read_topic,
    run_stage_process,
    runs_within,
    table,
)
from tests.poison.raw_producer import produce_raw_headers
from tests.poison.strategies import Generated, envelope, raw_records
from tests.topic_config import set_topic_config

RAW_LIMIT = 4 * 1024 * 1024
"""The raw topic takes messages up to 4 MiB here (the DLQ keeps the broker's 1 MB default)."""
BROKER_DEFAULT = 1_048_588
"""The broker's ``message.max.bytes``: what every topic not raised (the DLQs) accepts."""
ANY_TIME = str(2**63 - 1)


def verdict(value: bytes | None) -> tuple[str | None, str | None]:
    """The parser's verdict on a value: (event id, None) or (None, reason)."""
    try:
        return RawEvent.from_kafka(value).event_id, None
    except MalformedMessageError as exc:
        return None, exc.reason
    except Exception as exc:  # the stage catches these too, and dead-letters the record
        return None, f"{type(exc).__name__}: {exc}"


def incompressible(size: int) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


def padded_event(size: int, event_id: str) -> bytes:
    """A valid event of ``size`` bytes: an unknown field carries the padding."""
    head = {
        "event_id": event_id,
        "event_type": "PROJECT_CREATED",
        "project_id": "5000001",
        "ingested_at": "2024-03-01T10:00:00Z",
    }
    empty = len(json.dumps({**head, "pad": ""}).encode())
    return json.dumps({**head, "pad": incompressible(size - empty)}).encode()


def near_the_limits() -> list[Generated]:
    """Records at the edges of the sizes: the broker's 1 MB, ``MAX_EVENT_BYTES`` (1 MiB), the
    DLQ's ``CLAIMX_DLQ_MAX_MESSAGE_BYTES`` (1,000,000) — what a DLQ copy must still fit."""
    just_under = BROKER_DEFAULT - 4096
    return [
        Generated(
            RawRecord(padded_event(just_under, "edge-good-under-broker-limit"), b"k"),
            "good",
            "good event just under the broker's 1 MB",
        ),
        Generated(
            RawRecord(b"\xff" + incompressible(just_under).encode(), b"k"),
            "poison",
            "invalid UTF-8 of ~1 MB (DLQ copy needs truncation)",
        ),
        Generated(
            RawRecord(padded_event(MAX_EVENT_BYTES + 1, "edge-over-max-event"), b"k"),
            "poison",
            "valid event one byte over MAX_EVENT_BYTES",
        ),
        Generated(
            RawRecord(padded_event(3 * 1024 * 1024, "edge-3mib"), None),
            "poison",
            "valid event of 3 MiB (raw topic raised, DLQ not)",
        ),
    ]


def at_the_envelopes_edges() -> list[Generated]:
    """Whole failure envelopes with a field at its edge, on poison (which the stage routes, so
    reads the envelope and writes the next one) and on a good event (which it ignores)."""
    edges = {
        "attempt of 4300 digits": envelope(attempt=b"9" * 4300),
        "replay count of 4300 digits": envelope(replay_count=b"9" * 4300),
        "attempt at the largest long": envelope(attempt=str(2**63 - 1).encode()),
        "offset past the largest long": envelope(original_offset=str(2**63).encode()),
        "topic longer than Kafka's": envelope(original_topic=incompressible(300_000).encode()),
    }
    return [
        *(
            Generated(RawRecord(b"not json", b"k", headers), "poison", f"not json, {edge}")
            for edge, headers in edges.items()
        ),
        Generated(
            RawRecord(
                padded_event(300, "edge-good-with-an-envelope"),
                b"k",
                edges["attempt of 4300 digits"],
            ),
            "good",
            "good event with an envelope at its edge",
        ),
    ]


def run_ingest(
    kafka_bootstrap: str, tmp: Path, generated: list[Generated], raw_limit: int = RAW_LIMIT
) -> tuple[Settings, list[Placed], StageExit]:
    settings = isolated_settings(kafka_bootstrap, tmp / "data")
    set_topic_config(
        settings,
        settings.claimx_events_topic,
        max_message_bytes=str(raw_limit),
        message_timestamp_after_max_ms=ANY_TIME,
    )
    placed = produce_exact(settings, settings.claimx_events_topic, [g.record for g in generated])
    return settings, placed, run_stage_process(settings, "ingest", tmp / "logs")


def origin_named(record: RawRecord) -> tuple[str, int, int] | None:
    """Where a record's readable failure envelope says it was first read. A stage keeps that
    origin in the copy it dead-letters (a replayed event keeps where it first failed); an
    envelope that cannot be read is ignored, and the copy names where the record is."""
    try:
        info = FailureInfo.maybe_from_headers(record.headers)
    except MalformedHeadersError:
        return None
    return (
        None
        if info is None
        else (info.original_topic, info.original_partition, info.original_offset)
    )


def take(
    origins: dict[tuple[str, int, int], list[Read]],
    origin: tuple[str, int, int],
    record: RawRecord,
) -> list[Read]:
    """The DLQ copy of ``record`` among those naming ``origin``: the one with its value and
    key, else its value, else its value's sha256 (a truncated copy). Generated envelopes name
    one origin for several records, so a copy is matched by what it holds, not by its order;
    a copy left over is a stray, reported as one."""
    letters = origins.get(origin, [])
    full = record.value or b""
    digest = hashlib.sha256(full).hexdigest()
    chosen = (
        next((r for r in letters if (r.value or b"") == full and r.key == record.key), None)
        or next((r for r in letters if (r.value or b"") == full), None)
        or next((r for r in letters if r.header(ORIGINAL_SHA256_HEADER) == digest), None)
    )
    if chosen is None:
        return []
    letters.remove(chosen)
    if not letters:
        del origins[origin]
    return [chosen]


def check_ingest(
    settings: Settings, generated: list[Generated], placed: list[Placed], exit: StageExit
) -> None:
    findings = Findings("ingest boundary")
    findings.stage_ran(exit)
    letters = read_topic(settings, settings.claimx_events_dlq_topic)
    tasks = Counter(
        EnrichmentTask.from_json(r.value).event_id
        for r in read_topic(settings, settings.claimx_enrichment_pending_topic)
    )
    rows = [row["event_id"] for row in table(settings, "claimx_events")]
    no_duplicates(findings, "claimx_events", rows)
    stored = set(rows)
    origins = by_origin(letters)
    raw_topic = settings.claimx_events_topic
    accepted: Counter[str] = Counter()
    refused = 0
    for made, at in zip(generated, placed, strict=True):
        record = made.record
        event_id, reason = verdict(record.value)
        named = origin_named(record)
        if named is None:
            here = origins.pop((raw_topic, at.partition, at.offset), [])
        else:
            here = take(origins, named, record)
        if made.intent == "good" and event_id is None:
            findings.add(f"[{made.label}] a valid event is refused by the parser: {reason}", record)
        if made.intent == "poison" and event_id is not None:
            findings.add(f"[{made.label}] poison accepted as event {event_id}", record)
        if event_id is not None:
            accepted[event_id] += 1
            if event_id not in stored:
                findings.add(f"[{made.label}] event {event_id} not in claimx_events", record)
            if not tasks[event_id]:
                findings.add(f"[{made.label}] event {event_id} has no enrichment task", record)
            if here:
                reasons = [letter.header("claimx.error_message") for letter in here]
                findings.add(f"[{made.label}] accepted event also dead-lettered: {reasons}", record)
            continue
        refused += 1
        if len(here) != 1:
            findings.add(
                f"[{made.label}] refused ({reason}) but in the events DLQ {len(here)} times",
                record,
            )
        for letter in here:
            check_dead_letter(findings, letter, record, stage="ingest")
    for (topic, partition, offset), strays in origins.items():
        findings.add(f"{len(strays)} DLQ record(s) from {topic}[{partition}]@{offset}: not ours")
    if sum(tasks.values()) != sum(accepted.values()):
        findings.add(
            f"{sum(tasks.values())} enrichment tasks for {sum(accepted.values())} accepted events"
        )
    if len(letters) != refused:
        findings.add(f"{len(letters)} events DLQ records for {refused} refused records")
    findings.check()


@runs_within(150)
@poison_settings
@given(batch=st.lists(raw_records(), min_size=BATCH, max_size=BATCH))
def test_every_raw_record_ends_in_claimx_events_or_the_events_dlq(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, batch: list[Generated]
) -> None:
    tmp = tmp_path_factory.mktemp("ingest-poison")
    generated = [*batch, *near_the_limits(), *at_the_envelopes_edges()]
    settings, placed, exit = run_ingest(kafka_bootstrap, tmp, generated)
    check_ingest(settings, generated, placed, exit)


def noise(size: int) -> bytes:
    """``size`` bytes no compression shrinks (the broker's limit applies after compression)."""
    return random.Random(size).randbytes(size)


LARGE_PARTS: dict[str, Callable[[int], RawRecord]] = {
    "value": lambda size: RawRecord(b"\xff" + noise(size), b"k"),
    "key": lambda size: RawRecord(b"not json", noise(size)),
    "one header": lambda size: RawRecord(b"not json", b"k", [("x-trace", noise(size))]),
    "1000 headers": lambda size: RawRecord(
        b"not json", b"k", [(f"h{i:03d}", noise(size // 1000 + i)) for i in range(1000)]
    ),
    "our error header": lambda size: RawRecord(
        b"{}", b"k", [("claimx.error_message", noise(size))]
    ),
    "a header name of 4-byte characters": lambda size: RawRecord(
        b"not json", b"k", [("\U0001f600" * (size // 4), b"")]
    ),
    "a whole envelope, its topic that large": lambda size: RawRecord(
        b"not json", b"k", envelope(original_topic=incompressible(size).encode())
    ),
}
"""Records that fill the raw topic with one part. The DLQ copy keeps our ``claimx.*`` headers
(the producer's are replaced, not copied) and cuts the rest to fit: the value, a key that
would crowd it out, the producer's headers that no longer fit."""


@pytest.mark.parametrize("part", list(LARGE_PARTS))
@pytest.mark.parametrize("raw_limit", [BROKER_DEFAULT, RAW_LIMIT], ids=["1MB-raw", "4MiB-raw"])
def test_a_dead_letter_copy_of_the_largest_record_fits_the_dlq(
    kafka_bootstrap: str, tmp_path: Path, raw_limit: int, part: str
) -> None:
    """The largest record of each shape that the raw topic takes, then a good event: the copy
    must fit the DLQ and the good event must land."""
    make = LARGE_PARTS[part]
    settings = isolated_settings(kafka_bootstrap, tmp_path / "probe", create_topics=False)
    size = largest_accepted(settings, raw_limit, make, 1000, raw_limit)
    good = Generated(RawRecord(padded_event(300, "after-the-large-one"), b"k"), "good", "good")
    generated = [Generated(make(size), "poison", f"{part} of {size} bytes"), good]
    settings, placed, exit = run_ingest(kafka_bootstrap, tmp_path, generated, raw_limit)
    check_ingest(settings, generated, placed, exit)


BAD_NAMES = 60
"""Enough records with a header name that is not UTF-8 for the readers' loops to run hot:
Python 3.11 specialises a call site after a few runs, and the client's fault showed there."""


def test_a_header_name_that_is_not_utf8_dead_letters_its_record_alone(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A producer outside Python may name a header in bytes that are not UTF-8; the client
    then cannot give that message's headers at all. Each such record goes to the events DLQ
    with its value and the reason, the events around them land, and the tools read them."""
    before = RawRecord(padded_event(300, "before-the-bad-names"), b"k")
    after = RawRecord(padded_event(300, "after-the-bad-names"), b"k")
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    topic = settings.claimx_events_topic
    produce_exact(settings, topic, [before])
    named = [padded_event(300, f"bad-name-{i}") for i in range(BAD_NAMES)]
    bad = [(b"\xff\xfe-name", b"x"), (b"traceparent", b"00-1")]
    produce_raw_headers(settings.kafka_bootstrap_servers, topic, [(v, bad) for v in named])
    produce_exact(settings, topic, [after])
    exit = run_stage_process(settings, "ingest", tmp_path / "logs")
    findings = Findings("a header name that is not UTF-8")
    findings.stage_ran(exit)
    findings.check()
    assert sorted(row["event_id"] for row in table(settings, "claimx_events")) == [
        "after-the-bad-names",
        "before-the-bad-names",
    ]
    dead: dict[int, bytes | None] = {}
    for letter in read_topic(settings, settings.claimx_events_dlq_topic):
        info = letter.failure()
        assert info is not None and info.error_category == "permanent"
        assert "header name is not UTF-8" in info.error_message
        dead[info.original_offset] = letter.value
    assert dead == {offset: value for offset, value in enumerate(named, start=1)}
    raw = read_topic(settings, topic)  # a tool reads them too: no headers, not a crash
    assert [r.headers for r in raw] == [[]] * (BAD_NAMES + 2)
    env = {k.upper(): v for k, v in settings_env(settings).items()}
    traced = subprocess.run(  # a trace reads each message's headers twice
        [sys.executable, "-m", "claimx_flow", "trace", "bad-name-7", "--output", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "CLAIMX_ENV": "local"},
        timeout=120,
    )
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout)["verdict"]["state"] == "dlq"
