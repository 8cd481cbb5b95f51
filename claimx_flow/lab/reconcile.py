"""The conservation law, checked: every event and every media file where it must be, once.

Used at the end of chaos runs and end-to-end runs. Each check reads the real outcome (Delta
tables, stored files, DLQ topics, the cache directory, the results stage's summary) and
returns a human-readable problem for each way the law is broken.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import client_config
from claimx_flow.kafka.records import message_headers
from claimx_flow.kafka.topics import watermarks
from claimx_flow.media.cache_runs import cached_files, sweep_orphans
from claimx_flow.models import FailureInfo, MalformedHeadersError, RawEvent
from claimx_flow.routing.failures import READ_AT_HEADER

READ_TIMEOUT_S = 60.0
MEDIA_EVENT = "PROJECT_FILE_ADDED"
NO_API_EVENTS = {"PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL"}
_SUMMARY = re.compile(r"results: (\d+) completed, (\d+) failed \([^)]*\), (\d+) bytes")


@dataclass
class Reconciliation:
    """What was found, and what is wrong."""

    events: int = 0
    media: int = 0
    attachments: int = 0
    dlq: dict[str, int] = field(default_factory=dict)
    dlq_ids: dict[str, int] = field(default_factory=dict)
    """Per task DLQ, the distinct events (enrichment) or media files (download) its copies name:
    fewer than ``dlq`` when one was dead-lettered from two messages (a duplicate upstream, as a
    replayed epoch of the stage before sends) or twice from one read."""
    routed_twice: int = 0
    """DLQ copies beyond the first of one stage's read of one message (``claimx.read_at``):
    a restart the routing ledger missed (see docs/architecture.md); counted, not a problem."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def reconcile(
    settings: Settings,
    events: Iterable[RawEvent],
    *,
    results_logs: list[Path] | None = None,
    expected_content: dict[str, bytes] | None = None,
) -> Reconciliation:
    events = list(events)
    report = Reconciliation(events=len({e.event_id for e in events}))
    failed_events, failed_media = _dead_letters(settings, report)
    _check_events(settings, events, report)
    _check_no_duplicates(settings, report)
    media = {e.media_id: e for e in events if e.event_type == MEDIA_EVENT and e.media_id}
    report.media = len(media)
    attachments = _rows(settings, "claimx_attachments")
    report.attachments = len(attachments)
    stored = {row["media_id"]: row for row in attachments}
    for media_id, event in media.items():
        in_dlq = media_id in failed_media or event.event_id in failed_events
        if (media_id in stored) == in_dlq:
            where = "both uploaded and dead-lettered" if in_dlq else "neither uploaded nor in a DLQ"
            report.problems.append(f"media {media_id} is {where}")
    for media_id, row in stored.items():
        _check_file(settings, row, (expected_content or {}).get(media_id), report)
    projects = {row["project_id"] for row in _rows(settings, "claimx_projects")}
    for event in events:
        if event.event_type in NO_API_EVENTS or event.event_id in failed_events:
            continue
        if event.project_id not in projects:
            report.problems.append(f"event {event.event_id}: project {event.project_id} missing")
    sweep_orphans(settings.effective_cache_dir)
    leftovers = cached_files(settings.effective_cache_dir)
    if leftovers:
        report.problems.append(f"{len(leftovers)} orphan cache files, e.g. {leftovers[0].name}")
    if results_logs is not None:
        _check_results(results_logs, len(stored), report)
    return report


def _check_events(settings: Settings, events: list[RawEvent], report: Reconciliation) -> None:
    stored = Counter(row["event_id"] for row in _rows(settings, "claimx_events"))
    expected = {e.event_id for e in events}
    missing = expected - set(stored)
    if missing:
        report.problems.append(f"{len(missing)} events missing from claimx_events")


def _check_no_duplicates(settings: Settings, report: Reconciliation) -> None:
    for name, spec in TABLES.items():
        keys = Counter(tuple(row[k] for k in spec.keys) for row in _rows(settings, name))
        doubled = [key for key, count in keys.items() if count > 1]
        if doubled:
            report.problems.append(f"{name}: {len(doubled)} keys stored twice, e.g. {doubled[0]}")


def _check_file(
    settings: Settings, row: dict[str, Any], expected: bytes | None, report: Reconciliation
) -> None:
    path = Path(row["onelake_path"].removeprefix("file://"))
    if not path.is_relative_to(settings.files_dir.resolve()) or not path.exists():
        report.problems.append(f"media {row['media_id']}: stored file {path} missing")
        return
    content = path.read_bytes()
    if len(content) != row["bytes"] or hashlib.sha256(content).hexdigest() != row["sha256"]:
        report.problems.append(f"media {row['media_id']}: stored file differs from its row")
    if expected is not None and content != expected:
        report.problems.append(f"media {row['media_id']}: stored bytes differ from the source")


def _check_results(results_logs: list[Path], uploaded: int, report: Reconciliation) -> None:
    """The latest summary line of the results stage (any of its processes) agrees."""
    lines = [
        line
        for log in results_logs
        for line in log.read_text(errors="replace").splitlines()
        if _SUMMARY.search(line)
    ]
    if not lines:
        report.problems.append("the results stage logged no summary")
        return
    latest = max(lines)  # lines start with their timestamp
    match = _SUMMARY.search(latest)
    assert match is not None
    completed = int(match.group(1))
    if completed != uploaded:
        report.problems.append(f"results counted {completed} files, attachments hold {uploaded}")


def _dead_letters(settings: Settings, report: Reconciliation) -> tuple[set[str], set[str]]:
    """Event ids in the enrichment DLQ and media ids in the download DLQ."""
    event_ids: set[str] = set()
    media_ids: set[str] = set()
    for name, topic in (
        ("events", settings.claimx_events_dlq_topic),
        ("enrichment", settings.claimx_enrichment_dlq_topic),
        ("download", settings.claimx_downloads_dlq_topic),
    ):
        copies = read_headers(settings, topic)
        infos = [_failure(headers) for headers in copies]
        report.dlq[name] = len(infos)
        if name != "events":  # raw events that did not parse name no id
            named = {
                info.media_id if name == "download" else info.event_id
                for info in infos
                if info is not None
            }
            report.dlq_ids[name] = len(named - {None, ""})
        reads = Counter(dict(h).get(READ_AT_HEADER) for h in copies)
        report.routed_twice += sum(n - 1 for read, n in reads.items() if read is not None)
        for info in infos:
            if info is None:
                continue
            if name == "enrichment" and info.event_id:
                event_ids.add(info.event_id)
            if name == "download" and info.media_id:
                media_ids.add(info.media_id)
    return event_ids, media_ids


def _failure(headers: list[tuple[str, bytes | None]]) -> FailureInfo | None:
    try:
        return FailureInfo.maybe_from_headers(headers)
    except MalformedHeadersError:
        return None


def read_headers(settings: Settings, topic: str) -> list[list[tuple[str, bytes | None]]]:
    """The headers of every message in ``topic``, read from the beginning to the end."""
    consumer = Consumer({**client_config(settings), "group.id": f"reconcile-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            return []
        wanted: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in described.partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            if high > low:
                wanted[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        consumer.assign(starts)
        headers: list[list[tuple[str, bytes | None]]] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while wanted:
            if time.monotonic() > deadline:
                raise ClaimxError(f"could not read {topic} to its end in {READ_TIMEOUT_S:.0f}s")
            for msg in consumer.consume(500, 2.0):
                if msg.error() is not None:
                    continue
                pairs = message_headers(msg)
                headers.append([(k, v.encode() if isinstance(v, str) else v) for k, v in pairs])
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                if offset + 1 >= wanted.get(partition, 0):
                    wanted.pop(partition, None)
        return headers
    finally:
        consumer.close()


def _rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    path = (settings.tables_dir / table).resolve()
    if not (path / "_delta_log").exists():
        return []
    rows: list[dict[str, Any]] = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    return rows
