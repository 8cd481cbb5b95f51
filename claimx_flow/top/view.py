"""The snapshot as a Rich table: a row per stage process, what the broker says on the stage's
first row, anything wrong in red."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from claimx_flow.top.snapshot import Counter, ProcessRow, Snapshot, StageRow

BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def _rate(counter: Counter | None) -> Text:
    if counter is None:
        return Text("-", style="dim")
    if counter.rate is None:
        return Text("…", style="dim")
    return Text(f"{counter.rate:,.1f}/s")


def _count(value: int | None, *, alarm: bool = False) -> Text:
    if value is None:
        return Text("?", style="red")
    return Text(f"{value:,}", style="bold red" if alarm and value else "")


def _progress(row: ProcessRow) -> Text:
    if row.last_progress_s is not None:
        return Text(f"{row.last_progress_s:,.0f}s ago")
    if not row.reachable:
        return Text("-", style="dim")
    return Text(f"none in {row.watched_s:,.0f}s", style="yellow")


def _ready(row: ProcessRow) -> Text:
    if not row.reachable:
        return Text("unreachable", style="bold red")
    if row.ready:
        return Text("ready", style="green")
    return Text("not ready", style="bold red")


def _note(row: ProcessRow, stage_notes: list[str]) -> Text:
    if not row.reachable:
        return Text("; ".join([*stage_notes, row.error or ""]), style="red")
    notes = list(row.not_ready)
    if row.serves and row.serves != row.endpoint.stage:
        notes.insert(0, f"serves stage {row.serves}")
    return Text("; ".join([*stage_notes, *notes]), style="red")


def _stage_notes(stage: StageRow) -> list[str]:
    """What the broker says is wrong with the stage's group; on its first row."""
    if not stage.past_end:
        return []
    return [f"committed past the end of {', '.join(stage.past_end)} (topic made again?), counted 0"]


def _stage_cells(stage: StageRow) -> list[Text]:
    return [
        Text(stage.stage, style="bold"),
        _count(stage.lag),
        Text("-", style="dim") if not stage.tier_topics else _count(stage.tiers),
        Text("-", style="dim") if stage.dlq_topic is None else _count(stage.dlq, alarm=True),
    ]


def view(snapshot: Snapshot) -> RenderableType:
    table = Table(
        title=(
            f"claimx top · Kafka {snapshot.bootstrap} · every {snapshot.interval_s:g}s · "
            f"{snapshot.taken_at.strftime('%H:%M:%S')} UTC · Ctrl-C quits"
        ),
        expand=False,
    )
    for name, justify in (
        ("stage", "left"),
        ("process", "left"),
        ("ready", "left"),
        ("in", "right"),
        ("out", "right"),
        ("failed", "right"),
        ("lag", "right"),
        ("tiers", "right"),
        ("DLQ", "right"),
        ("breaker", "left"),
        ("progress", "right"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "note", overflow="fold")  # type: ignore[arg-type]
    for stage in snapshot.stages:
        stage_name, lag, tiers, dlq = _stage_cells(stage)
        if not stage.processes:
            blank = Text("-", style="dim")
            table.add_row(
                stage_name, Text("no endpoint", style="dim"), blank, blank, blank, blank,
                lag, tiers, dlq, blank, blank, Text("; ".join(_stage_notes(stage)), "red"),
            )  # fmt: skip
            continue
        for index, row in enumerate(stage.processes):
            first = index == 0
            empty = Text("")
            table.add_row(
                stage_name if first else empty,
                Text(row.endpoint.address, style="" if row.reachable else "red"),
                _ready(row),
                _rate(row.input),
                _rate(row.output),
                _rate(row.failures),
                lag if first else empty,
                tiers if first else empty,
                dlq if first else empty,
                Text(row.breaker or "-", style=BREAKER_STYLE.get(row.breaker or "", "dim")),
                _progress(row),
                _note(row, _stage_notes(stage) if first else []),
            )
    parts: list[RenderableType] = [table]
    if snapshot.broker_error:
        parts.append(Text(f"Kafka: {snapshot.broker_error}", style="bold red"))
    return Group(*parts)
