"""The one-line verdict of a trace: landed, in retry until T, in DLQ because R, read but not
confirmed, ingested before the window, incomplete, or not seen.

Each chain of records (an event's ingestion, its enrichment, each media file's download and
upload) is judged by its latest record: a DLQ copy means dead-lettered, a retry tier copy means
waiting until its due time, a record its reader has committed past means read (only read: a
committed offset says nothing of what came of it). "Landed" needs evidence: a row in Delta that
the event wrote (``event_id`` lineage), its files in ``claimx_attachments``, or a completed
upload result. A window left partly unread (``--limit``, a silent partition) makes any verdict
but a decisive one "incomplete".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from claimx_flow.delta.tables import ATTACHMENTS, EVENTS
from claimx_flow.models.types import as_utc
from claimx_flow.trace.model import Found, TableRow, Trace
from claimx_flow.trace.roles import (
    CONSUMER,
    DLQ_ROLES,
    DOWNLOAD_CHAIN,
    ENRICHMENT_CHAIN,
    INGEST_CHAIN,
    RETRY_ROLES,
    Role,
)

State = Literal[
    "landed",
    "retry",
    "dlq",
    "failed",
    "incomplete",
    "unconfirmed",
    "in_flight",
    "before_window",
    "not_seen",
]

SEVERITY: dict[State, int] = {
    "dlq": 8,
    "retry": 7,
    "failed": 6,
    "incomplete": 5,
    "unconfirmed": 4,
    "in_flight": 3,
    "before_window": 2,
    "landed": 1,
    "not_seen": 0,
}
"""Which state a combined verdict reports first: the one an operator must act on."""

DECISIVE: frozenset[State] = frozenset({"dlq", "retry", "failed", "landed"})
"""States that records left unread cannot overturn: DLQs and retry tiers are read whole, and
"landed" rests on Delta or an upload result."""

FILE_EVENT = "PROJECT_FILE_ADDED"


@dataclass(frozen=True)
class Verdict:
    state: State
    text: str
    until: datetime | None = None
    reason: str | None = None
    category: str | None = None
    topic: str | None = None
    replay_count: int | None = None
    attempt: int | None = None
    position: str | None = None

    @property
    def line(self) -> str:
        return self.text


def _short(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else "an unknown time"


def chain_verdict(records: list[Found]) -> Verdict | None:
    """The state of one chain from its latest record; None for a chain with no record."""
    if not records:
        return None
    last = max(records, key=lambda f: f.sort_key)
    failure = last.failure
    if last.role in DLQ_ROLES:
        reason = (
            f"{failure.error_class}: {failure.error_message}" if failure else "(no failure headers)"
        )
        replays = failure.replay_count if failure else 0
        category = failure.error_category.value if failure else "unknown"
        return Verdict(
            "dlq",
            f"in DLQ because {reason} ({last.topic}, {category}, replayed {replays} time"
            f"{'' if replays == 1 else 's'})",
            reason=reason,
            category=category,
            topic=last.topic,
            replay_count=replays,
            attempt=failure.attempt if failure else None,
            position=last.position,
        )
    if last.role in RETRY_ROLES:
        due: datetime | None = failure.due_at if failure else None
        if due is None and last.timestamp and last.where.tier_delay_s is not None:
            due = last.timestamp + timedelta(seconds=last.where.tier_delay_s)
        why = f"{failure.error_class}: {failure.error_message}" if failure else None
        if last.processed:
            return Verdict(
                "in_flight",
                f"released from {last.topic} (due {_short(due)}); its next step is not seen yet",
                until=due,
                position=last.position,
            )
        return Verdict(
            "retry",
            f"in retry until {_short(due)} ({last.topic}, attempt "
            f"{failure.attempt if failure else '?'}: {why or 'no failure headers'})",
            until=due,
            reason=why,
            category=failure.error_category.value if failure else None,
            topic=last.topic,
            attempt=failure.attempt if failure else None,
            position=last.position,
        )
    if last.role is Role.RESULT:
        if last.fields.get("status") == "completed":
            return Verdict("landed", f"uploaded to {last.fields.get('onelake_path')}")
        error = str(last.fields.get("error"))
        return Verdict("failed", f"upload failed: {error}", reason=error, position=last.position)
    if last.processed:
        reader = CONSUMER.get(last.role, "its reader")
        return Verdict(
            "unconfirmed",
            f"read but not confirmed: {reader} has read {last.position}, and nothing shows "
            "what came of it",
            position=last.position,
        )
    waiting = "not read yet" if last.processed is False else "read position unknown"
    return Verdict("in_flight", f"waiting in {last.position} ({waiting})", position=last.position)


def _worst(verdicts: list[Verdict]) -> Verdict | None:
    failing = [v for v in verdicts if v.state in ("dlq", "retry", "failed")]
    if not failing:
        return None
    return max(failing, key=lambda v: SEVERITY[v.state])


def _file_text(rows: list[TableRow], stored: int) -> str:
    if stored == 1 and len(rows) == 1:
        row = rows[0]
        return (
            f"{row.text('onelake_path')} ({row.text('bytes')} bytes, sha256 {row.text('sha256')})"
        )
    return f"{stored} file{'' if stored == 1 else 's'} stored"


def event_verdict(trace: Trace, event_id: str) -> Verdict:
    records = [f for f in trace.records if f.ids.event_id == event_id]
    chains: list[list[Found]] = [
        [f for f in records if f.role in INGEST_CHAIN],
        [f for f in records if f.role in ENRICHMENT_CHAIN],
    ]
    downloads: dict[str, list[Found]] = defaultdict(list)
    for f in records:
        if f.role in DOWNLOAD_CHAIN and f.ids.media_id:
            downloads[f.ids.media_id].append(f)
    chains += list(downloads.values())
    verdicts = [v for chain in chains if (v := chain_verdict(chain)) is not None]
    failing = _worst(verdicts)

    events_rows = [r for r in trace.rows_of(EVENTS.name) if r.text("event_id") == event_id]
    written = trace.evidence.written_by.get(event_id, set())
    types = {t for r in events_rows if (t := r.text("event_type"))}
    types |= {str(f.fields["event_type"]) for f in records if f.fields.get("event_type")}
    media = set(downloads)
    media |= {m for r in events_rows if (m := r.text("media_id"))}
    media |= {str(f.fields["media_id"]) for f in records if f.fields.get("media_id")}
    if failing is not None:
        files = FILE_EVENT in types or bool(downloads)
        landed = media <= trace.evidence.stored_media if files and media else bool(written)
        if landed and unread(trace):
            # A replay of the copy may sit in what went unread; Delta, read whole, says where
            # the event ended.
            return Verdict(
                "landed",
                f"landed, though an earlier copy was read ({failing.text}); part of the window "
                "went unread, where its replay may be",
                position=failing.position,
            )
        return failing
    if not records and not events_rows and not written:
        return Verdict("not_seen", f"not seen since {_short(trace.since)}")

    enrichment = chain_verdict(chains[1])
    enriched = bool(written or downloads)  # evidence: what the enricher wrote or sent on
    earlier = None if records else _ingested_before(trace, events_rows)
    if FILE_EVENT in types or downloads:
        stored = media & trace.evidence.stored_media
        if media and media == stored:
            attachments = [
                r for r in trace.rows_of(ATTACHMENTS.name) if r.text("media_id") in media
            ]
            return Verdict("landed", f"landed: {_file_text(attachments, len(stored))}")
        if earlier is not None:
            return _before_window(trace, earlier, "its file is not in claimx_attachments")
        if not enriched:
            return _not_enriched(enrichment, bool(events_rows))
        waiting = [v for m in sorted(media - stored) if (v := chain_verdict(downloads.get(m, [])))]
        detail = waiting[0].text if waiting else "no download task seen yet"
        return Verdict("in_flight", f"enriched; file not stored yet: {detail}")
    if enriched:
        return Verdict("landed", f"landed: enriched ({', '.join(sorted(written))})")
    if earlier is not None:
        return _before_window(trace, earlier, "no row in Delta names it now")
    return _not_enriched(enrichment, bool(events_rows))


def _ingested_before(trace: Trace, events_rows: list[TableRow]) -> datetime | None:
    """When the event was ingested, if that was before the window: its records are then older
    than what the trace read, and their absence says nothing."""
    times = [
        as_utc(at) for r in events_rows if isinstance(at := r.row.get("ingested_at"), datetime)
    ]
    if times and max(times) < trace.since:
        return max(times)
    return None


def _before_window(trace: Trace, ingested: datetime, detail: str) -> Verdict:
    return Verdict(
        "before_window",
        f"ingested {_short(ingested)}, before the window (since {_short(trace.since)}): no "
        f"failure seen in the window, but its older records were not read ({detail}; an "
        "earlier --since reads them)",
    )


def _not_enriched(enrichment: Verdict | None, ingested: bool) -> Verdict:
    if enrichment is not None and enrichment.state == "unconfirmed":
        return Verdict(
            "unconfirmed",
            f"read but not confirmed: enrich has read its task ({enrichment.position}), yet no "
            "row in Delta names this event (a later event may have changed its rows) and no "
            "download task, retry or DLQ copy of it was seen",
            position=enrichment.position,
        )
    if enrichment is not None:
        return Verdict("in_flight", f"ingested; enrichment task {enrichment.text}")
    if ingested:
        return Verdict("in_flight", "ingested; no enrichment task seen in the window")
    return Verdict("in_flight", "raw event seen; not ingested yet")


def media_verdict(trace: Trace, media_id: str) -> Verdict:
    chain = [f for f in trace.records if f.role in DOWNLOAD_CHAIN and f.ids.media_id == media_id]
    verdict = chain_verdict(chain)
    if verdict is not None and verdict.state in ("dlq", "retry", "failed"):
        return verdict
    if media_id in trace.evidence.stored_media:
        stored = [r for r in trace.rows_of(ATTACHMENTS.name) if r.text("media_id") == media_id]
        return Verdict("landed", f"landed: {_file_text(stored, 1)}")
    if verdict is not None:
        return verdict
    events = sorted({e for f in trace.records if (e := f.ids.event_id)})
    events += [e for r in trace.rows_of(EVENTS.name) if (e := r.text("event_id"))]
    if events:
        return combined([event_verdict(trace, e) for e in dict.fromkeys(events)], "event")
    return Verdict("not_seen", f"not seen since {_short(trace.since)}")


def combined(verdicts: list[Verdict], noun: str) -> Verdict:
    """Many verdicts in one line, the most urgent one first."""
    if not verdicts:
        return Verdict("not_seen", "not seen")
    if len(verdicts) == 1:
        return verdicts[0]
    counts: dict[State, int] = defaultdict(int)
    for v in verdicts:
        counts[v.state] += 1
    first = max(verdicts, key=lambda v: SEVERITY[v.state])
    tally = ", ".join(
        f"{n} {state.replace('_', ' ')}"
        for state, n in sorted(counts.items(), key=lambda kv: -SEVERITY[kv[0]])
    )
    text = f"{len(verdicts)} {noun}s: {tally}"
    if first.state != "landed":
        text += f"; first: {first.text}"
    return Verdict(
        first.state,
        text,
        until=first.until,
        reason=first.reason,
        category=first.category,
        topic=first.topic,
        replay_count=first.replay_count,
        attempt=first.attempt,
        position=first.position,
    )


def verdict(trace: Trace) -> Verdict:
    """The trace's verdict; "incomplete" when part of the window went unread and what was read
    decides nothing."""
    judged = _judged(trace)
    gaps = unread(trace)
    if not gaps or judged.state in DECISIVE:
        return judged
    return Verdict(
        "incomplete",
        f"incomplete: {gaps}; nothing decisive in what was read (so far: {judged.text})",
        position=judged.position,
    )


def unread(trace: Trace) -> str:
    """What of the window went unread, in words; empty when it was read whole."""
    gaps = []
    if trace.skipped:
        gaps.append(f"{trace.skipped:,} messages left unread by --limit {trace.limit:,}")
    if trace.stalled:
        gaps.append(f"partitions given up on: {', '.join(trace.stalled)}")
    return " and ".join(gaps)


def _judged(trace: Trace) -> Verdict:
    target = trace.target
    if target.kind == "event":
        return event_verdict(trace, target.id)
    if target.kind == "media":
        return media_verdict(trace, target.id)
    events = [e for r in trace.rows_of(EVENTS.name) if (e := r.text("event_id"))]
    events += [e for f in trace.records if (e := f.ids.event_id)]
    return combined([event_verdict(trace, e) for e in dict.fromkeys(events)], "event")
