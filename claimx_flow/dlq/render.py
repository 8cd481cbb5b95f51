"""Rich views of the DLQ commands: tables an operator reads at a terminal.

Everything taken from a message is wrapped in ``Text``, never parsed as markup: an error message
holding ``[brackets]`` must show as written. URL query strings and credential-shaped text in a
message are masked (presigned URLs carry their signature there; see ``masking``).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from claimx_flow.dlq.browse import DlqSurvey
from claimx_flow.dlq.columns import ColumnTally, letter_columns, masked
from claimx_flow.dlq.documents import masked_counts, shown, shown_header
from claimx_flow.dlq.left import LeftRecords
from claimx_flow.dlq.purge import PurgePlan
from claimx_flow.dlq.reader import DeadLetter
from claimx_flow.dlq.replay import ReplayOutcome

CATEGORY_STYLE = {"transient": "yellow", "permanent": "red", "auth": "magenta"}
VALUE_PREVIEW = 400
BAR_WIDTH = 30


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


def _category(name: str) -> Text:
    return Text(name, style=CATEGORY_STYLE.get(name, "dim"))


def _top(counts: Counter[str], n: int = 3) -> Text:
    text = Text()
    for i, (name, count) in enumerate(counts.most_common(n)):
        if i:
            text.append(", ")
        text.append_text(_category(name) if name in CATEGORY_STYLE else Text(name))
        text.append(f" {count:,}")
    return text


def survey_view(bootstrap: str, surveys: list[DlqSurvey]) -> RenderableType:
    """One row per DLQ; then, for each DLQ that holds any, the most frequent event types,
    projects, media and attempts of the records scanned, and the top errors."""
    overview = Table(title=f"dead-letter queues on {bootstrap}", box=box.ROUNDED)
    overview.add_column("DLQ / topic", min_width=12, overflow="fold")
    overview.add_column("messages", justify="right", no_wrap=True)
    overview.add_column("oldest (UTC)", min_width=10)
    overview.add_column("newest (UTC)", min_width=10)
    overview.add_column("categories", min_width=12)
    parts: list[RenderableType] = [overview]
    for s in surveys:
        name = Text.assemble((s.dlq.value, "bold"), "\n", (s.topic, "dim"))
        if not s.exists:
            overview.add_row(name, Text("missing", style="red"), "-", "-", "")
            continue
        overview.add_row(
            name, f"{s.messages:,}", when(s.oldest), when(s.newest), _top(s.categories)
        )
        if s.scanned:
            parts.append(_tally_table(s, s.columns))
        if s.errors:
            parts.append(_top_errors(s))
    return Group(*parts)


def _tally_table(s: DlqSurvey, tally: ColumnTally) -> Table:
    """The most frequent values of each column, with their counts ('-': records without one)."""
    scope = "" if s.scanned >= s.messages else f" (newest {s.scanned:,} of {s.messages:,})"
    table = Table(
        title=f"most frequent in {s.dlq.value}{scope}", box=box.ROUNDED, title_justify="left"
    )
    counted = (tally.event_types, tally.projects, tally.media, tally.attempts)
    for heading in ("event type", "project", "media", "attempt"):
        table.add_column(heading, overflow="fold")
    table.add_row(*(_stacked(counts) for counts in counted))
    return table


def _stacked(counts: Counter[str], n: int = 3) -> Text:
    text = Text()
    for i, (name, count) in enumerate(counts.most_common(n)):
        if i:
            text.append("\n")
        text.append(name, style="dim" if name == "-" else "")
        text.append(f" {count:,}")
    hidden = len(counts) - n
    if hidden > 0:
        text.append(f"\n… {hidden} more", style="dim")
    return text


def letters_table(letters: list[DeadLetter], dlq: str) -> Table:
    """A page of a DLQ, one row per record: where it is, when, and its columns."""
    table = Table(title=f"{dlq} DLQ: {len(letters)} message(s)", box=box.ROUNDED)
    table.add_column("part", justify="right")
    table.add_column("offset", justify="right")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("event type", overflow="fold", min_width=20)
    table.add_column("project", overflow="fold")
    table.add_column("media", overflow="fold")
    table.add_column("attempt", justify="right")
    table.add_column("category")
    table.add_column("error", overflow="fold")
    for letter in letters:
        columns = letter_columns(letter)
        failure = letter.failure
        error = failure.error_class if failure else (letter.failure_error and "unreadable headers")
        table.add_row(
            str(letter.partition),
            str(letter.offset),
            when(letter.timestamp),
            Text(columns.event_type or "-"),
            Text(columns.project_id or "-"),
            Text(columns.media_id or "-"),
            "-" if columns.attempt is None else str(columns.attempt),
            _category(columns.error_category) if columns.error_category else Text("-"),
            Text(error or "-"),
        )
    return table


def _top_errors(s: DlqSurvey) -> Table:
    scope = "" if s.scanned >= s.messages else f" (newest {s.scanned:,} of {s.messages:,})"
    table = Table(
        title=f"top errors in {s.dlq.value}{scope}", box=box.ROUNDED, title_justify="left"
    )
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("error class", min_width=12)
    table.add_column("error message", min_width=20)
    for (cls, message), count in s.errors.most_common(5):
        table.add_row(f"{count:,}", Text(cls), Text(masked(message) or ""))
    return table


def letter_view(letter: DeadLetter, dlq: str) -> Panel:
    """One DLQ record: position, ids, failure, every header and the start of the value."""
    info = letter.failure
    ids = letter.ids
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold cyan", no_wrap=True)
    fields.add_column()
    rows: list[tuple[str, Text]] = [
        ("timestamp", Text(f"{when(letter.timestamp)} UTC")),
        ("key", Text(shown(letter.key)[0] or "-")),
        ("event type", Text(letter_columns(letter).event_type or "-")),
        ("event id", Text(ids.event_id or "-")),
        ("project id", Text(ids.project_id or "-")),
        ("media id", Text(ids.media_id or "-")),
    ]
    if info is not None:
        origin = f"{info.original_topic}[{info.original_partition}]@{info.original_offset}"
        failed = f"first {when(info.first_failed_at)}, last {when(info.last_failed_at)}"
        rows += [
            ("stage", Text(info.stage)),
            ("category", _category(info.error_category.value)),
            ("error class", Text(info.error_class, style="bold")),
            ("error message", Text(masked(info.error_message) or "")),
            ("attempts", Text(str(info.attempt))),
            ("replay count", Text(str(info.replay_count))),
            ("failed", Text(failed)),
            ("origin", Text(origin)),
        ]
    else:
        reason = masked(letter.failure_error) or "no claimx.* failure headers"
        rows.append(("failure", Text(reason, style="red")))
    for name, value in rows:
        fields.add_row(name, value)
    return Panel(
        Group(fields, _headers_table(letter), _value_preview(letter)),
        title=f"[bold]{dlq}[/] · partition {letter.partition} · offset {letter.offset}",
        title_align="left",
        box=box.ROUNDED,
    )


def _headers_table(letter: DeadLetter) -> Table:
    table = Table(title="headers", box=box.SIMPLE_HEAD, title_justify="left", expand=False)
    table.add_column("name", style="dim", no_wrap=True)
    table.add_column("value")
    for name, raw in letter.headers:
        text, encoding = shown_header(name, raw)
        value = "(none)" if text is None else text if encoding == "utf-8" else f"base64:{text}"
        table.add_row(Text(name), Text(value))
    return table


def _value_preview(letter: DeadLetter) -> Text:
    text, encoding = shown(letter.value)
    if text is None:
        return Text("value: (none)", style="dim")
    label = "value" if encoding == "utf-8" else "value (base64)"
    cut = text if len(text) <= VALUE_PREVIEW else text[: VALUE_PREVIEW - 1] + "…"
    return Text.assemble((f"{label}: ", "bold cyan"), cut)


def force_line(command: str) -> Text:
    """The command that sends the parked records anyway; print it with ``soft_wrap`` so that
    it stays one line to copy."""
    return Text.assemble(("to send the parked records anyway, once: ", "bold"), command)


def histogram(title: str, label: str, counts: Counter[str], limit: int = 10) -> Table:
    """Counts as bars, largest first: what a dry run would replay, at a glance."""
    table = Table(title=title, box=box.ROUNDED, title_justify="left")
    table.add_column("count", justify="right")
    table.add_column("", no_wrap=True)
    table.add_column(label)
    peak = max(counts.values(), default=0)
    for name, count in counts.most_common(limit):
        bar = "█" * max(1, round(BAR_WIDTH * count / peak)) if peak else ""
        shown = _category(name) if name in CATEGORY_STYLE else Text(name)
        table.add_row(f"{count:,}", Text(bar, style="green"), shown)
    hidden = len(counts) - limit
    if hidden > 0:
        table.add_row("", "", Text(f"… {hidden} more", style="dim"))
    return table


def outcome_view(outcome: ReplayOutcome) -> RenderableType:
    done = outcome.done
    verb = "would replay" if outcome.dry_run else "replayed"
    summary = Table(
        box=box.ROUNDED,
        show_header=False,
        title=f"replay of {outcome.dlq.value}",
        title_justify="left",
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row(verb, f"{done.replayed:,}")
    summary.add_row("skipped by filter", f"{done.skipped:,}")
    summary.add_row("parked (replay limit)", f"{done.parked.total:,}")
    summary.add_row("left: truncated copies", f"{done.truncated.total:,}")
    session = Text(f"session {outcome.session} (consumer group {outcome.group})", style="dim")
    parts: list[RenderableType] = [summary, session]
    if outcome.dry_run and done.replayed:
        parts += [
            histogram(f"{verb} by category", "category", done.by_category),
            histogram(f"{verb} by error", "error", masked_counts(done.by_error)),
        ]
    if done.by_target:
        parts.append(histogram(f"{verb} to", "topic", done.by_target))
    if done.parked.total:
        parts.append(_left_table("parked: left in the DLQ", done.parked))
    if done.truncated.total:
        title = "truncated copies: left in the DLQ (the original did not fit; not replayable)"
        parts.append(_left_table(title, done.truncated))
    return Group(*parts)


def _left_table(title: str, left: LeftRecords) -> Table:
    if left.total > len(left.shown):
        title = f"{title} (the first {len(left.shown):,} of {left.total:,})"
    table = Table(title=title, box=box.ROUNDED, title_justify="left")
    for name in ("partition", "offset", "event id", "media id", "replays"):
        table.add_column(name, justify="right" if name in {"partition", "offset"} else "left")
    for p in left.shown:
        table.add_row(
            str(p.partition),
            str(p.offset),
            Text(masked(p.event_id) or "-"),
            Text(masked(p.media_id) or "-"),
            str(p.replay_count),
        )
    return table


def plan_view(plan: PurgePlan, *, dry_run: bool) -> Table:
    scope = f"before {when(plan.before)} UTC" if plan.before else "everything"
    action = "would remove" if dry_run else "to remove"
    table = Table(title=f"purge {plan.dlq.value} ({plan.topic}): {scope}", box=box.ROUNDED)
    for name in ("partition", "low", "high", "cut", action):
        table.add_column(name, justify="right")
    for c in plan.partitions:
        table.add_row(str(c.partition), str(c.low), str(c.high), str(c.cut), f"{c.removed:,}")
    table.add_section()
    table.add_row("total", "", "", "", f"{plan.removed:,}", style="bold")
    return table
