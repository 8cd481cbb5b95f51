"""``claimx recovery init|show|reset``: the stages' recovery state (their Kafka positions)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import load_settings
from claimx_flow.startup.recovery import (
    describe_input_topics,
    init_recovery,
    kafka_cluster_id,
    record_identity,
    recovery_directory,
)
from claimx_flow.startup.recovery_state import (
    InputPosition,
    Target,
    input_positions,
    read_recovery,
    reset_positions,
)

app = typer.Typer(help="Create, show and reset the stages' recovery state.")
console = Console()


@app.command()
def init(stages: list[str] = typer.Argument(None, help="Stages (default: all).")) -> None:
    """Create each stage's recovery partitions (CLAIMX_RECOVERY_PARTITIONS) if missing, and
    record the Kafka cluster and input topic ids they belong to."""
    settings = load_settings()
    cluster = kafka_cluster_id(settings)
    for stage in _stages(stages):
        directory = init_recovery(settings, stage, cluster)
        topics = describe_input_topics(settings, stage)
        record_identity(settings, stage, cluster, topics.values(), replace=False)
        console.print(f"{stage}: {directory}")


@app.command()
def show(stage: str = typer.Argument(..., help="The stage.")) -> None:
    """Print the offsets the stage resumes from, per topic partition (Bytewax's resume rule)."""
    (stage,) = _stages([stage])
    settings = load_settings()
    positions = input_positions(settings, stage)
    epoch = read_recovery(recovery_directory(settings, stage)).resume_epoch()
    _table(f"{stage} resumes at epoch {epoch} from", positions)


@app.command()
def reset(
    stage: str = typer.Argument(..., help="The stage (stopped)."),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="Replay everything retained."),
    to_latest: bool = typer.Option(False, "--to-latest", help="Skip to the end of the topics."),
    to_datetime: datetime | None = typer.Option(
        None, "--to-datetime", help="Replay from the first message at or after this time (UTC)."
    ),
) -> None:
    """Point a stopped stage's inputs elsewhere (like kafka-consumer-groups --reset-offsets)."""
    (stage,) = _stages([stage])
    chosen = [to_earliest, to_latest, to_datetime is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("give exactly one of --to-earliest, --to-latest, --to-datetime")
    target: Target
    if to_datetime is not None:
        target = to_datetime if to_datetime.tzinfo else to_datetime.replace(tzinfo=UTC)
    else:
        target = "earliest" if to_earliest else "latest"
    _table(f"{stage} will resume from", reset_positions(load_settings(), stage, target))


def _stages(stages: list[str] | None) -> list[str]:
    unknown = [s for s in stages or [] if s not in STAGE_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s) {unknown}; one of {', '.join(STAGE_NAMES)}")
    return list(stages or STAGE_NAMES)


def _table(title: str, positions: list[InputPosition]) -> None:
    table = Table(title=title)
    for column in ("topic", "partition", "offset", "epoch"):
        table.add_column(column, justify="right" if column != "topic" else "left")
    for p in positions:
        table.add_row(p.topic, str(p.partition), f"{p.offset:,}", str(p.epoch))
    console.print(table)
