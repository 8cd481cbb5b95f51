"""``claimx lag``: each stage's consumer lag per topic partition."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import load_settings
from claimx_flow.kafka.lag import stage_lag

console = Console()


def lag(
    stage: list[str] = typer.Option([], "--stage", "-s", help="Only these stages."),
) -> None:
    """Show topic, partition, end offset, committed offset and lag for each stage's group."""
    settings = load_settings()
    unknown = [s for s in stage if s not in STAGE_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s): {', '.join(unknown)}", param_hint="--stage")
    table = Table(title=f"consumer lag on {settings.kafka_bootstrap_servers}")
    for column in ("group", "topic", "partition", "end", "committed", "lag"):
        table.add_column(column, justify="left" if column in ("group", "topic") else "right")
    for name in stage or STAGE_NAMES:
        for row in stage_lag(settings, name):
            committed = "-" if row.committed is None else f"{row.committed:,}"
            table.add_row(
                row.group, row.topic, str(row.partition), f"{row.end:,}", committed, f"{row.lag:,}"
            )
    console.print(table)
