"""A trace as a time-ordered timeline: a Rich table for people, one JSON document for scripts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from claimx_flow.delta.tables import ATTACHMENTS, EVENTS, TABLES
from claimx_flow.trace.model import Found, TableRow, Trace
from claimx_flow.trace.roles import PIPELINE_ORDER, Role
from claimx_flow.trace.verdict import State, Verdict, verdict

STEP_KIND: dict[Role, str] = {
    Role.RAW: "raw event",
    Role.EVENTS_DLQ: "DLQ",
    Role.ENRICHMENT: "enrichment task",
    Role.ENRICHMENT_RETRY: "retry",
    Role.ENRICHMENT_DLQ: "DLQ",
    Role.DOWNLOAD: "download task",
    Role.DOWNLOAD_RETRY: "retry",
    Role.CACHED: "downloaded",
    Role.RESULT: "upload result",
    Role.DOWNLOAD_DLQ: "DLQ",
}

STATE_STYLE: dict[State, str] = {
    "landed": "bold green",
    "retry": "bold yellow",
    "dlq": "bold red",
    "failed": "bold red",
    "incomplete": "bold magenta",
    "unconfirmed": "bold yellow",
    "in_flight": "bold cyan",
    "before_window": "bold blue",
    "not_seen": "bold magenta",
}

ROW_ORDER = len(PIPELINE_ORDER)


@dataclass(frozen=True)
class Step:
    at: datetime | None
    kind: str
    where: str
    text: str
    detail: dict[str, Any]
    order: int

    @property
    def sort_key(self) -> tuple[float, int]:
        return (self.at.timestamp() if self.at else float("-inf"), self.order)


def _record_text(found: Found) -> str:
    f, failure = found.fields, found.failure
    role = found.role
    if role is Role.RAW:
        return f"{f.get('event_type')} for project {f.get('project_id')}" + (
            f", media {f['media_id']}" if f.get("media_id") else ""
        )
    if role in (Role.ENRICHMENT_RETRY, Role.DOWNLOAD_RETRY):
        if failure is None:
            return f"tier {found.where.tier_delay_s}s (no failure headers)"
        return (
            f"tier {found.where.tier_delay_s}s, attempt {failure.attempt}, due "
            f"{failure.due_at.isoformat(timespec='seconds') if failure.due_at else '?'}, "
            f"{failure.error_category.value}: {failure.error_class}: {failure.error_message}"
        )
    if role in (Role.EVENTS_DLQ, Role.ENRICHMENT_DLQ, Role.DOWNLOAD_DLQ):
        if failure is None:
            return "no failure headers"
        return (
            f"{failure.error_category.value}: {failure.error_class}: {failure.error_message} "
            f"(stage {failure.stage}, attempt {failure.attempt}, replayed "
            f"{failure.replay_count} times)"
        )
    prefix = ""
    if failure is not None:
        prefix = (
            f"replayed from the DLQ (replay {failure.replay_count}); "
            if failure.attempt == 0
            else f"released from retry after attempt {failure.attempt}; "
        )
    processed = {True: "; read by its stage", False: "; not read yet", None: ""}[found.processed]
    if role is Role.ENRICHMENT:
        body = f"{f.get('event_type')} for project {f.get('project_id')}"
    elif role is Role.DOWNLOAD:
        body = f"media {f.get('media_id')} {f.get('file_name')!s}"
    elif role is Role.CACHED:
        body = f"{f.get('bytes')} bytes, sha256 {f.get('sha256')}"
    else:
        body = (
            f"{f.get('status')}: {f.get('onelake_path')} ({f.get('bytes')} bytes, "
            f"sha256 {f.get('sha256')})"
        )
    return prefix + body + processed


def record_step(found: Found) -> Step:
    detail: dict[str, Any] = {
        "topic": found.topic,
        "partition": found.partition,
        "offset": found.offset,
        "key": found.key,
        "message": found.fields,
        "read_by_stage": found.processed,
    }
    if found.where.tier_delay_s is not None:
        detail["tier_delay_s"] = found.where.tier_delay_s
    if found.failure is not None:
        detail["failure"] = found.failure.model_dump(mode="json")
    return Step(
        found.timestamp,
        STEP_KIND[found.role],
        found.position,
        _record_text(found),
        {"role": found.role.value, **detail},
        PIPELINE_ORDER[found.role],
    )


def _row_time(row: TableRow) -> datetime | None:
    for column in ("uploaded_at", "last_enriched_at", "created_at"):
        value = row.row.get(column)
        if isinstance(value, datetime):
            return value
    return None


def row_step(row: TableRow, trace: Trace) -> Step:
    spec = TABLES[row.table]
    keys = ", ".join(f"{k}={row.row.get(k)}" for k in spec.keys)
    if row.table == EVENTS.name:
        kind, text = "events row", f"{row.text('event_type')} ingested ({keys})"
    elif row.table == ATTACHMENTS.name:
        kind = "file"
        text = (
            f"{row.text('onelake_path')} ({row.text('bytes')} bytes, sha256 {row.text('sha256')})"
        )
    else:
        kind = "entity row"
        by = row.text("event_id")
        mine = trace.target.kind == "event" and by == trace.target.id
        text = f"{keys}; " + ("written by this event" if mine else f"last changed by event {by}")
    return Step(
        _row_time(row), kind, row.table, text, {"table": row.table, "row": row.row}, ROW_ORDER
    )


def steps(trace: Trace) -> list[Step]:
    found = [record_step(f) for f in trace.records] + [row_step(r, trace) for r in trace.rows]
    return sorted(found, key=lambda s: s.sort_key)


def files(trace: Trace) -> list[dict[str, Any]]:
    return [
        {
            "media_id": r.text("media_id"),
            "project_id": r.text("project_id"),
            "path": r.text("onelake_path"),
            "bytes": r.row.get("bytes"),
            "sha256": r.text("sha256"),
            "uploaded_at": _json(r.row.get("uploaded_at")),
            "source_event_id": r.text("source_event_id"),
        }
        for r in trace.rows_of(ATTACHMENTS.name)
    ]


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def verdict_document(judged: Verdict) -> dict[str, Any]:
    fields: dict[str, Any] = _json(
        {
            "state": judged.state,
            "text": judged.text,
            "until": judged.until,
            "reason": judged.reason,
            "category": judged.category,
            "topic": judged.topic,
            "replay_count": judged.replay_count,
            "attempt": judged.attempt,
            "position": judged.position,
        }
    )
    return fields


def document(trace: Trace) -> dict[str, Any]:
    """The whole trace as one JSON-ready document."""
    return {
        "target": {"kind": trace.target.kind, "id": trace.target.id},
        "window": {"since": trace.since.isoformat(), "until": trace.until.isoformat()},
        "scanned": {"messages": trace.scanned, "skipped": trace.skipped, "limit": trace.limit},
        "notes": trace.notes,
        "timeline": [
            {"at": _json(s.at), "kind": s.kind, "where": s.where, "text": s.text, **_json(s.detail)}
            for s in steps(trace)
        ],
        "files": files(trace),
        "verdict": verdict_document(verdict(trace)),
    }


def view(trace: Trace) -> RenderableType:
    """The timeline table, the notes and the verdict line."""
    table = Table(
        title=f"trace of {trace.target}",
        caption=(
            f"window {trace.since.isoformat(timespec='seconds')} → "
            f"{trace.until.isoformat(timespec='seconds')}; {trace.scanned:,} messages read"
            + (f", {trace.skipped:,} left unread (--limit)" if trace.skipped else "")
        ),
    )
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("where", overflow="fold")
    table.add_column("what", overflow="fold")
    for step in steps(trace):
        style = "red" if step.kind == "DLQ" else "yellow" if step.kind == "retry" else None
        table.add_row(
            step.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if step.at else "-",
            Text(step.kind, style=style or ""),
            escape(step.where),
            escape(step.text),
        )
    judged = verdict(trace)
    parts: list[RenderableType] = [table]
    parts += [Text(f"note: {note}", style="dim") for note in trace.notes]
    line = Text("verdict: ", style="bold")
    line.append(judged.text, style=STATE_STYLE[judged.state])
    parts.append(line)
    return Group(*parts)
