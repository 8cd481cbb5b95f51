"""Backfill: a JSONL/NDJSON export (the runbook's Kusto export) loaded into a Kafka topic.

The ingester then reads that topic by configuration (``CLAIMX_EVENTS_TOPIC``), as the runbook's
procedure says. Lines go to Kafka unchanged — the ingester validates them, so a bad line ends in
the events DLQ with its reason like any other bad event — keyed by project id when the line
names one. Re-running a backfill adds no duplicate rows: events keep their identity (their own
``event_id`` or the deterministic hash) and ``claimx_events`` is insert-if-absent. Lines Kafka
refuses (one too large for the topic, say) are named by number, with the line to run again from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import produce_or_wait, producer_config
from claimx_flow.kafka.topics import max_message_bytes

DEFAULT_TOPIC = "claimx.events.backfill"


class BackfillError(ClaimxError):
    """Lines that Kafka did not confirm: the message names them and where to run again from."""


class ExportLine(NamedTuple):
    number: int
    """The line's number in the export (1 for the first), as an editor shows it."""
    text: bytes


@dataclass(frozen=True)
class BackfillResult:
    lines: int
    seconds: float


BATCH_FRAMING_BYTES = 1024
"""Room left in a batch for the protocol's own framing."""
SHOWN_FAILURES = 5
"""Failed lines named in the error; the rest are counted."""


def export_lines(source: IO[bytes], from_line: int = 1) -> Iterator[ExportLine]:
    """Each non-empty line of the export from line ``from_line`` on, without its line ending
    (bytes, never decoded here), with its number."""
    for number, line in enumerate(source, start=1):
        stripped = line.strip()
        if stripped and number >= from_line:
            yield ExportLine(number, stripped)


def partition_key(line: bytes) -> bytes | None:
    """The line's project id, so one project's events stay in one partition; None if unknown."""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict):
        return None
    project = event.get("project_id", event.get("projectId"))
    return str(project).encode() if isinstance(project, str | int) else None


class _Deliveries:
    """Which lines Kafka has not confirmed yet, and which it refused, with why."""

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.failed: dict[int, str] = {}

    def sent(self, number: int) -> Callable[[KafkaError | None, Message], None]:
        self.pending.add(number)

        def delivered(error: KafkaError | None, _message: Message) -> None:
            self.pending.discard(number)
            if error is not None:
                self.failed[number] = error.str()

        return delivered

    def refused(self, number: int, exc: KafkaException) -> None:
        self.pending.discard(number)
        cause = exc.args[0] if exc.args else None
        self.failed[number] = cause.str() if isinstance(cause, KafkaError) else str(exc)

    def error(self, count: int) -> BackfillError | None:
        """What to tell the operator when some lines did not make it, or None."""
        missing = sorted({*self.pending, *self.failed})
        if not missing:
            return None
        named = [
            f"line {n} ({self.failed.get(n, 'no answer from Kafka')})"
            for n in missing[:SHOWN_FAILURES]
        ]
        more = (
            f" and {len(missing) - SHOWN_FAILURES:,} more" if len(missing) > SHOWN_FAILURES else ""
        )
        return BackfillError(
            f"{len(missing):,} of {count:,} lines not confirmed by Kafka: "
            f"{', '.join(named)}{more}; fix what the reasons name, then run again with "
            f"--from-line {missing[0]} (the lines after it that were loaded go again, which adds "
            "no rows)"
        )


def backfill(
    lines: Iterable[ExportLine],
    topic: str,
    settings: Settings,
    *,
    rate_per_s: float | None = None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> BackfillResult:
    """Produce every line to ``topic`` and return once Kafka confirmed them all.

    Records and batches are held to the topic's own ``max.message.bytes``: a line too large
    for it is refused alone, here, instead of failing with it the batch it would have joined
    (the broker refuses a batch whole), which named every line of it and failed again on the
    next run."""
    limit = max_message_bytes(settings, topic)
    caps = {"message.max.bytes": limit, "batch.size": max(limit - BATCH_FRAMING_BYTES, 1)}
    producer = Producer(producer_config(settings, **caps))
    deliveries = _Deliveries()
    started = time.monotonic()
    count = 0
    for number, line in lines:
        if rate_per_s:
            ahead = count / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        try:
            produce_or_wait(
                producer,
                topic,
                value=line,
                key=partition_key(line),
                on_delivery=deliveries.sent(number),
            )
        except KafkaException as exc:  # refused before sending: too large for the topic
            deliveries.refused(number, exc)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
            on_progress(count)
    producer.flush(120)
    on_progress(count)
    error = deliveries.error(count)
    if error is not None:
        raise error
    return BackfillResult(count, time.monotonic() - started)
