"""``claimx topics create|list``: the pipeline's own topic bootstrap.

``create`` raises retention on existing topics that keep messages for less than the pipeline
needs (a retry tier: twice its delay + ``CLAIMX_RETRY_RETENTION_ALLOWANCE_SECONDS``) and never
lowers a longer one set by hand.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.cli.spans import span_text
from claimx_flow.config import load_settings
from claimx_flow.kafka.topics import admin_client, describe_topics, ensure_topics, pipeline_topics
from claimx_flow.routing.tiers import orphan_tiers
from claimx_flow.terminal import OUTPUT_OPTION, Output, emit_json

app = typer.Typer(help="Create and list the pipeline's Kafka topics.")


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


@app.command()
def create(
    partitions: int | None = typer.Option(
        None, min=1, help="Partitions per topic (default: CLAIMX_TOPIC_PARTITIONS)."
    ),
) -> None:
    """Create every pipeline topic and raise retention that is too short; safe to run again."""
    settings = load_settings()
    specs = pipeline_topics(settings, partitions)
    outcome = ensure_topics(admin_client(settings), specs)
    created = [name for name, what in outcome.items() if what == "created"]
    raised = [name for name, what in outcome.items() if what == "raised"]
    for spec in specs:
        if spec.name in raised:
            console().print(f"retention of {spec.name} raised to {_human_ms(spec.retention_ms)}")
    console().print(
        f"{len(created)} created, {len(specs) - len(created)} already present "
        f"({len(raised)} with retention raised) on {settings.kafka_bootstrap_servers}"
    )


@app.command("list")
def list_topics(output: Output = OUTPUT_OPTION) -> None:
    """Show each pipeline topic with its partitions, replicas (in yellow when fewer than
    CLAIMX_TOPIC_REPLICATION_FACTOR), messages and retention, and any orphan retry tier (one
    the configuration no longer names) that still holds messages."""
    settings = load_settings()
    specs = pipeline_topics(settings)
    states = describe_topics(settings, [s.name for s in specs])
    orphans = orphan_tiers(settings)
    missing = sum(1 for state in states if state.partitions == 0)
    if output is Output.JSON:
        emit_json(
            {
                "bootstrap_servers": settings.kafka_bootstrap_servers,
                "topics": [
                    {
                        "topic": spec.name,
                        "role": spec.role,
                        "exists": state.partitions > 0,
                        "partitions": state.partitions,
                        "replicas": state.replicas if state.partitions else None,
                        "messages": state.messages if state.partitions else None,
                        "retention_ms": state.retention_ms if state.partitions else None,
                    }
                    for spec, state in zip(specs, states, strict=True)
                ],
                "orphan_tiers": [
                    {
                        "topic": orphan.tier.topic,
                        "delay_s": orphan.tier.delay_s,
                        "pending_topic": orphan.tier.pending_topic,
                        "partitions": orphan.state.partitions,
                        "replicas": orphan.state.replicas,
                        "messages": orphan.messages,
                        "retention_ms": orphan.state.retention_ms,
                    }
                    for orphan in orphans
                ],
                "missing": missing,
            }
        )
        if missing:
            Console(stderr=True).print(f"{missing} topic(s) missing: run claimx topics create")
            raise typer.Exit(1)
        return
    table = Table(title=f"topics on {settings.kafka_bootstrap_servers}")
    table.add_column("topic", no_wrap=True)
    table.add_column("role")
    table.add_column("partitions", justify="right")
    table.add_column("replicas", justify="right")
    table.add_column("messages", justify="right")
    table.add_column("retention", justify="right")
    wanted = settings.claimx_topic_replication_factor
    for spec, state in zip(specs, states, strict=True):
        if state.partitions == 0:
            table.add_row(spec.name, spec.role, "[red]missing[/]", "-", "-", "-")
            continue
        table.add_row(
            spec.name,
            spec.role,
            str(state.partitions),
            _replicas(state.replicas, wanted),
            f"{state.messages:,}",
            _human_ms(state.retention_ms),
        )
    for orphan in orphans:
        table.add_row(
            orphan.tier.topic,
            "[yellow]orphan tier[/]",
            str(orphan.state.partitions),
            _replicas(orphan.state.replicas, wanted),
            f"{orphan.messages:,}",
            _human_ms(orphan.state.retention_ms),
        )
    console().print(table)
    if missing:
        console().print(f"[red]{missing} topic(s) missing[/]: run [bold]claimx topics create[/]")
        raise typer.Exit(1)


def _replicas(replicas: int, wanted: int) -> str:
    """Fewer than CLAIMX_TOPIC_REPLICATION_FACTOR in yellow: one broker lost loses messages."""
    return f"[yellow]{replicas}[/]" if replicas < wanted else str(replicas)


def _human_ms(ms: int | None) -> str:
    """``7d``, ``1h``, ``1d10m`` (a 300 s tier: twice its delay + 1 day), ``forever`` for -1."""
    if ms is None:
        return "-"
    if ms < 0:
        return "forever"
    return span_text(ms // 1000)
