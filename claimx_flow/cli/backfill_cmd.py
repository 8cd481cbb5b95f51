"""``claimx backfill FILE|-``: load a JSONL export into a backfill topic for the ingester."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from claimx_flow.config import load_settings
from claimx_flow.kafka.backfill import DEFAULT_TOPIC, backfill, export_lines
from claimx_flow.kafka.topics import TopicSpec, admin_client, ensure_topics
from claimx_flow.terminal import OUTPUT_OPTION, Output, emit_json


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console(stderr=True)


def backfill_command(
    source: str = typer.Argument(..., help="JSONL/NDJSON export file, or - for stdin."),
    topic: str = typer.Option(DEFAULT_TOPIC, help="Topic to load (created if missing)."),
    rate: float = typer.Option(0, min=0, help="Lines per second at most (0: no limit)."),
    partitions: int = typer.Option(0, min=0, help="Partitions if the topic is created."),
    from_line: int = typer.Option(
        1, "--from-line", min=1, help="Start at this line of the export (after a failed run)."
    ),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Load an export into a topic; then run the ingester with CLAIMX_EVENTS_TOPIC=<topic>.

    A progress bar with the lines sent (of the file's total) shows on stderr while it runs.
    """
    settings = load_settings()
    spec = TopicSpec(
        topic,
        "main",
        partitions or settings.claimx_topic_partitions,
        settings.claimx_topic_replication_factor,
    )
    # A bad path: no topic made.
    total = None if source == "-" else _count_lines(Path(source), from_line)
    ensure_topics(admin_client(settings), [spec])
    with contextlib.ExitStack() as stack:
        stream = sys.stdin.buffer if source == "-" else stack.enter_context(Path(source).open("rb"))
        counts = MofNCompleteColumn() if total is not None else TextColumn("{task.completed:,}")
        progress = stack.enter_context(
            Progress(
                TextColumn("backfill"),
                BarColumn(),
                counts,
                TextColumn("lines"),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console(),
                transient=output is Output.JSON,
                disable=output is Output.JSON and not console().is_terminal,
            )
        )
        task = progress.add_task("lines", total=total)
        result = backfill(
            export_lines(stream, from_line),
            topic,
            settings,
            rate_per_s=rate or None,
            on_progress=lambda done: progress.update(task, completed=done),
        )
    if output is Output.JSON:
        emit_json(
            {
                "topic": topic,
                "lines": result.lines,
                "seconds": round(result.seconds, 3),
                "next": f"run the ingester with CLAIMX_EVENTS_TOPIC={topic}",
            }
        )
        return
    console().print(
        f"{result.lines:,} lines loaded into {topic} in {result.seconds:.1f}s; now run the "
        f"ingester with [bold]CLAIMX_EVENTS_TOPIC={topic}[/]"
    )


def _count_lines(path: Path, from_line: int) -> int:
    with path.open("rb") as source:
        return sum(1 for _ in export_lines(source, from_line))
