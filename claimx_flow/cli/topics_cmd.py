"""``claimx topics create|list``: the pipeline's own topic bootstrap."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.config import load_settings
from claimx_flow.kafka.topics import admin_client, describe_topics, ensure_topics, pipeline_topics

app = typer.Typer(help="Create and list the pipeline's Kafka topics.")
console = Console()


@app.command()
def create(
    partitions: int | None = typer.Option(
        None, min=1, help="Partitions per topic (default: CLAIMX_TOPIC_PARTITIONS)."
    ),
) -> None:
    """Create every pipeline topic with the runbook's retention; safe to run again."""
    settings = load_settings()
    specs = pipeline_topics(settings, partitions)
    outcome = ensure_topics(admin_client(settings), specs)
    created = [name for name, what in outcome.items() if what == "created"]
    console.print(
        f"{len(created)} created, {len(specs) - len(created)} already present "
        f"on {settings.kafka_bootstrap_servers}"
    )


@app.command("list")
def list_topics() -> None:
    """Show each pipeline topic with its partitions, messages and retention."""
    settings = load_settings()
    specs = pipeline_topics(settings)
    states = describe_topics(settings, [s.name for s in specs])
    table = Table(title=f"topics on {settings.kafka_bootstrap_servers}")
    table.add_column("topic", no_wrap=True)
    table.add_column("role")
    table.add_column("partitions", justify="right")
    table.add_column("messages", justify="right")
    table.add_column("retention", justify="right")
    missing = 0
    for spec, state in zip(specs, states, strict=True):
        if state.partitions == 0:
            missing += 1
            table.add_row(spec.name, spec.role, "[red]missing[/]", "-", "-")
            continue
        table.add_row(
            spec.name,
            spec.role,
            str(state.partitions),
            f"{state.messages:,}",
            _human_ms(state.retention_ms),
        )
    console.print(table)
    if missing:
        console.print(f"[red]{missing} topic(s) missing[/]: run [bold]claimx topics create[/]")
        raise typer.Exit(1)


def _human_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms % 86_400_000 == 0:
        return f"{ms // 86_400_000}d"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    return f"{ms // 1000}s"
