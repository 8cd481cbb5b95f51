"""``claimx trace``: follow one event, project or media file through the pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from claimx_flow.cli.spans import SPAN_EXAMPLES, span_or_none
from claimx_flow.config import load_settings
from claimx_flow.models import utc_now
from claimx_flow.models.types import as_utc
from claimx_flow.terminal import Output, emit_json
from claimx_flow.trace.collect import TraceOptions, trace
from claimx_flow.trace.model import Target, TargetKind
from claimx_flow.trace.render import document, view

PROGRESS_FROM = 5_000
"""Scans shorter than this finish before a progress bar would tell anything."""


def parse_since(text: str) -> datetime:
    """``24h``, ``90m``, ``7d`` back from now, or an ISO instant (UTC without an offset)."""
    span = span_or_none(text, "--since")
    if span is not None:
        try:
            return utc_now() - span
        except OverflowError:
            raise typer.BadParameter(
                f"{text!r} reaches before year 1", param_hint="--since"
            ) from None
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a span ({SPAN_EXAMPLES}) nor an ISO time", param_hint="--since"
        ) from None


def _target(event_id: str | None, project_id: str | None, media_id: str | None) -> Target:
    asked: list[tuple[TargetKind, str | None]] = [
        ("event", event_id),
        ("project", project_id),
        ("media", media_id),
    ]
    given = [Target(kind, value.strip()) for kind, value in asked if value and value.strip()]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of EVENT_ID, --project-id or --media-id")
    return given[0]


@contextmanager
def _progress_bar(console: Console) -> Iterator[Callable[[int], Callable[[int], None]]]:
    """A progress bar on stderr for each long scan (none when stderr is not a terminal)."""
    bar = Progress(
        TextColumn("scanning Kafka"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )

    def start(total: int) -> Callable[[int], None]:
        if total < PROGRESS_FROM:
            return lambda _: None
        task = bar.add_task("scan", total=total)
        return lambda n: bar.advance(task, n)

    with bar:
        yield start


def trace_command(
    event_id: str | None = typer.Argument(None, help="The event id to follow."),
    project_id: str | None = typer.Option(None, "--project-id", help="Follow a whole project."),
    media_id: str | None = typer.Option(None, "--media-id", help="Follow one media file."),
    since: str = typer.Option(
        "24h", "--since", help="How far back to read Kafka: 24h, 90m, 7d or an ISO time."
    ),
    limit: int = typer.Option(
        200_000,
        "--limit",
        min=1,
        help="Read at most this many messages of the raw, pending, cached and results topics "
        "(newest kept); DLQs and retry tiers are always read whole.",
    ),
    all_partitions: bool = typer.Option(
        False,
        "--all-partitions",
        help="Read every partition of keyed topics (messages from a producer whose "
        "partitioner differs from the stages').",
    ),
    output: Output = typer.Option(
        Output.TABLE, "--output", "-o", case_sensitive=False, help="table or json."
    ),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per Kafka request."),
) -> None:
    """Follow one event, project or media file through the pipeline and say where it ended.

    Shows the raw event, its claimx_events row, the enrichment task, the rows it wrote, each
    download task, every retry and DLQ copy, the stored file and the upload result, then one
    verdict: landed (with evidence in Delta or an upload result), in retry until T, in DLQ
    because R, read but not confirmed, ingested before the window, incomplete (part of the
    window unread and nothing decisive), or not seen. Kafka is read from --since to the end
    seen at the start, keyed topics only in the partition of the key.
    """
    target = _target(event_id, project_id, media_id)
    options = TraceOptions(parse_since(since), limit, timeout, all_partitions)
    settings = load_settings()
    stderr = Console(stderr=True)
    try:
        with _progress_bar(stderr) as progress:
            found = trace(settings, target, options, progress)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if output is Output.JSON:
        emit_json(document(found))
    else:
        Console().print(view(found))
