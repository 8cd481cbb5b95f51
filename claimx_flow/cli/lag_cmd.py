"""``claimx lag``: each stage's consumer lag per topic partition, and what waits in its DLQ."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow import catalog
from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import load_settings
from claimx_flow.kafka.lag import (
    DlqPartition,
    PartitionLag,
    dlq_depths,
    dlq_topics,
    read_dlq_partitions,
    stage_lag,
)
from claimx_flow.kafka.topics import topic_names
from claimx_flow.routing.tiers import orphan_names
from claimx_flow.terminal import OUTPUT_OPTION, Output, emit_json


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


def lag(
    stage: list[str] = typer.Option([], "--stage", "-s", help="Only these stages."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Show topic, partition, end offset, committed offset and lag for each stage's group,
    then the depth of the DLQs those stages write (high minus low watermark). Exit 1 when an
    input topic is missing."""
    settings = load_settings()
    unknown = [s for s in stage if s not in STAGE_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s): {', '.join(unknown)}", param_hint="--stage")
    stages = stage or list(STAGE_NAMES)
    existing = topic_names(settings)
    # The retry stage also drains orphan tiers (tiers of an older RETRY_DELAYS).
    orphans = [tier.topic for tier in orphan_names(settings, existing)] if "retry" in stages else []
    wanted = [t for name in stages for t in catalog.input_topics(settings, catalog.stage(name))]
    missing = [t for t in dict.fromkeys(wanted) if t not in set(existing)]
    rows = [
        row
        for name in stages
        for row in stage_lag(settings, name, orphans if name == "retry" else ())
    ]
    topics = dlq_topics(settings, stages)
    partitions = read_dlq_partitions(settings, topics) if topics else []
    if output is Output.JSON:
        emit_json(_document(settings.kafka_bootstrap_servers, rows, topics, partitions, missing))
        _missing_exit(missing)
        return
    table = Table(title=f"consumer lag on {settings.kafka_bootstrap_servers}")
    for column in ("group", "topic", "partition", "end", "committed", "lag"):
        table.add_column(column, justify="left" if column in ("group", "topic") else "right")
    for row in rows:
        committed = "-" if row.committed is None else f"{row.committed:,}"
        lag = f"{row.lag:,} (committed past the end)" if row.past_end else f"{row.lag:,}"
        style = "red" if row.past_end else None
        topic = f"{row.topic} (orphan tier)" if row.topic in orphans else row.topic
        table.add_row(
            row.group, topic, str(row.partition), f"{row.end:,}", committed, lag, style=style
        )
    for topic in missing:
        table.add_row("", topic, "-", "", "", "topic missing", style="red")
    console().print(table)
    if not topics:
        _missing_exit(missing)
        return
    depths = dlq_depths(partitions)
    dlqs = Table(title="dead-letter queues (depth: records still in the DLQ, high - low)")
    for column in ("topic", "partition", "low", "high", "depth"):
        dlqs.add_column(column, justify="left" if column == "topic" else "right")
    for topic in topics:
        found = [part for part in partitions if part.topic == topic]
        for part in found:
            dlqs.add_row(
                topic, str(part.partition), f"{part.low:,}", f"{part.high:,}", f"{part.depth:,}"
            )
        if found:
            dlqs.add_row(topic, "all", "", "", f"{depths[topic]:,}", style="bold")
        else:
            dlqs.add_row(topic, "-", "", "", "topic missing")
    console().print(dlqs)
    _missing_exit(missing)


def _missing_exit(missing: list[str]) -> None:
    """An input topic missing is a finding, as in ``claimx topics list``: exit 1."""
    if missing:
        Console(stderr=True).print(
            f"{len(missing)} input topic(s) missing: {', '.join(missing)} "
            "(run claimx topics create, or check the *_TOPIC settings)",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


def _document(
    bootstrap: str,
    rows: list[PartitionLag],
    topics: list[str],
    partitions: list[DlqPartition],
    missing: list[str],
) -> dict[str, Any]:
    depths = dlq_depths(partitions)
    return {
        "bootstrap_servers": bootstrap,
        "missing_inputs": missing,
        "lag": [
            {
                "group": row.group,
                "topic": row.topic,
                "partition": row.partition,
                "end": row.end,
                "committed": row.committed,
                "low": row.low,
                "lag": row.lag,
                "past_end": row.past_end,
            }
            for row in rows
        ],
        "dlqs": [
            {
                "topic": topic,
                "exists": topic in depths,
                "depth": depths.get(topic),
                "partitions": [
                    {"partition": p.partition, "low": p.low, "high": p.high, "depth": p.depth}
                    for p in partitions
                    if p.topic == topic
                ],
            }
            for topic in topics
        ],
    }
