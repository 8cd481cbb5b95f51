"""Backfill: a JSONL/NDJSON export (the runbook's Kusto export) loaded into a Kafka topic.

The ingester then reads that topic by configuration (``CLAIMX_EVENTS_TOPIC``), as the runbook's
procedure says. Lines go to Kafka unchanged — the ingester validates them, so a bad line ends in
the events DLQ with its reason like any other bad event — keyed by project id when the line
names one. Re-running a backfill adds no duplicate rows: events keep their identity (their own
``event_id`` or the deterministic hash) and ``claimx_events`` is insert-if-absent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from confluent_kafka import KafkaError, Message, Producer

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import produce_or_wait, producer_config

DEFAULT_TOPIC = "claimx.events.backfill"


class BackfillError(ClaimxError):
    """Lines that Kafka did not confirm; the backfill can simply be run again."""


@dataclass(frozen=True)
class BackfillResult:
    lines: int
    seconds: float


def export_lines(source: IO[bytes]) -> Iterator[bytes]:
    """Each non-empty line of the export, without its line ending (bytes, never decoded here)."""
    for line in source:
        stripped = line.strip()
        if stripped:
            yield stripped


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


def backfill(
    lines: Iterable[bytes],
    topic: str,
    settings: Settings,
    *,
    rate_per_s: float | None = None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> BackfillResult:
    """Produce every line to ``topic`` and return once Kafka confirmed them all."""
    producer = Producer(producer_config(settings))
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    started = time.monotonic()
    count = 0
    for line in lines:
        if rate_per_s:
            ahead = count / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        produce_or_wait(producer, topic, value=line, key=partition_key(line), on_delivery=delivered)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
            on_progress(count)
    remaining = producer.flush(120)
    on_progress(count)
    if remaining or failures:
        detail = failures[0] if failures else f"{remaining} still queued"
        raise BackfillError(
            f"{remaining + len(failures)} of {count} lines not confirmed by Kafka ({detail}); "
            f"run the backfill again — re-ingested events add no duplicate rows"
        )
    return BackfillResult(count, time.monotonic() - started)
