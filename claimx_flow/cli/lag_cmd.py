"""``claimx lag``: each stage's consumer lag per topic partition, and what waits in its DLQ."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import load_settings
from claimx_flow.kafka.lag import dlq_depths, dlq_topics, read_dlq_partitions, stage_lag

console = Console()


def lag(
    stage: list[str] = typer.Option([], "--stage", "-s", help="Only these stages."),
) -> None:
    """Show topic, partition, end offset, committed offset and lag for each stage's group,
    then the depth of the DLQs those stages write (high minus low watermark)."""
    settings = load_settings()
    unknown = [s for s in stage if s not in STAGE_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s): {', '.join(unknown)}", param_hint="--stage")
    stages = stage or list(STAGE_NAMES)
    table = Table(title=f"consumer lag on {settings.kafka_bootstrap_servers}")
    for column in ("group", "topic", "partition", "end", "committed", "lag"):
        table.add_column(column, justify="left" if column in ("group", "topic") else "right")
    for name in stages:
        for row in stage_lag(settings, name):
            committed = "-" if row.committed is None else f"{row.committed:,}"
            table.add_row(
                row.group, row.topic, str(row.partition), f"{row.end:,}", committed, f"{row.lag:,}"
            )
    console.print(table)

    topics = dlq_topics(settings, stages)
    if not topics:
        return
    partitions = read_dlq_partitions(settings, topics)
    depths = dlq_depths(partitions)
    dlqs = Table(title="dead-letter queues (depth: records still in the DLQ, high - low)")
    for column in ("topic", "partition", "low", "high", "depth"):
        dlqs.add_column(column, justify="left" if column == "topic" else "right")
    for topic in topics:
        rows = [part for part in partitions if part.topic == topic]
        for part in rows:
            dlqs.add_row(
                topic, str(part.partition), f"{part.low:,}", f"{part.high:,}", f"{part.depth:,}"
            )
        if rows:
            dlqs.add_row(topic, "all", "", "", f"{depths[topic]:,}", style="bold")
        else:
            dlqs.add_row(topic, "-", "", "", "topic missing")
    console.print(dlqs)
