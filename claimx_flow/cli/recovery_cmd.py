"""``claimx recovery init|show|reset``: the stages' recovery state (their Kafka positions).

``reset`` is destructive, so it works as ``claimx dlq purge`` does: it shows its plan and asks,
takes ``--yes`` for scripts, and refuses without a terminal unless given ``--yes``; before it
writes, it copies the stage's recovery files to a timestamped folder beside them.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings, load_settings
from claimx_flow.startup.recovery import (
    CLUSTER_MARKER,
    TOPICS_MARKER,
    describe_input_topics,
    init_recovery,
    kafka_cluster_id,
    record_identity,
    recovery_directory,
)
from claimx_flow.startup.recovery_state import (
    ASSUME_STOPPED_OPTION,
    STOPPED_AFTER_S,
    InputPosition,
    RecoveryStateError,
    Target,
    check_stopped,
    group_positions,
    input_positions,
    partition_files,
    read_recovery,
    reset_positions,
    target_offsets,
)
from claimx_flow.terminal import OUTPUT_OPTION, Output, confirm_plan, emit_json

app = typer.Typer(help="Create, show and reset the stages' recovery state.")


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


@app.command()
def init(stages: list[str] = typer.Argument(None, help="Stages (default: all).")) -> None:
    """Create each stage's recovery partitions (CLAIMX_RECOVERY_PARTITIONS) if missing, and
    record the Kafka cluster and input topic ids they belong to."""
    chosen = _stages(stages)  # a misspelt stage is named before Kafka is asked anything
    settings = load_settings()
    cluster = kafka_cluster_id(settings)
    for stage in chosen:
        directory = init_recovery(settings, stage, cluster)
        topics = describe_input_topics(settings, stage)
        record_identity(settings, stage, cluster, topics.values(), replace=False)
        console().print(Text(f"{stage}: {directory}"))


@app.command()
def show(
    stage: str = typer.Argument(..., help="The stage."), output: Output = OUTPUT_OPTION
) -> None:
    """Print the offsets the stage resumes from, per topic partition (Bytewax's resume rule)."""
    (stage,) = _stages([stage])
    settings = load_settings()
    positions = input_positions(settings, stage)
    directory = recovery_directory(settings, stage)
    epoch = read_recovery(directory).resume_epoch()
    if output is Output.JSON:
        emit_json(
            {
                "stage": stage,
                "directory": str(directory),
                "resume_epoch": epoch,
                "positions": [_position_document(p) for p in positions],
            }
        )
        return
    _table(f"{stage} resumes at epoch {epoch} from", positions)


@app.command()
def reset(
    stage: str = typer.Argument(..., help="The stage (stopped)."),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="Replay everything retained."),
    to_latest: bool = typer.Option(False, "--to-latest", help="Skip to the end of the topics."),
    to_datetime: datetime | None = typer.Option(
        None, "--to-datetime", help="Replay from the first message at or after this time (UTC)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
    group_only: bool = typer.Option(
        False,
        "--group-only",
        help="Move the consumer group only, whatever recovery files are on this machine: for a "
        "stage whose files are on its pods' volumes, which must then be deleted before it "
        "starts (docs/operations.md).",
    ),
    assume_stopped: bool = typer.Option(
        False,
        ASSUME_STOPPED_OPTION,
        help="The stage is stopped everywhere, although its group published positions in the "
        f"last {STOPPED_AFTER_S:.0f}s (stopped moments ago) or a process here that runs Bytewax "
        "cannot be inspected.",
    ),
) -> None:
    """Point a stopped stage's inputs elsewhere (like kafka-consumer-groups --reset-offsets).

    Shows the plan (each input partition's offset now and after) and asks; --yes skips the
    question, and without a terminal to ask on it refuses unless --yes is given. The stage's
    recovery files (part-*.sqlite3 and its cluster and topic markers) are first copied to a
    timestamped backup-* folder beside them, named in the output.
    Refuses while the stage may be running: a process here holding its recovery files, a
    process here running Bytewax whose files cannot be read, or its consumer group holding a
    position published (snapshot_at) in the last 150 s, wherever the stage runs;
    --assume-stopped overrides the last two. Refuses, too, an input snapshot of a shape it
    does not know.
    Where the stage's recovery files are not on this machine (Kubernetes keeps them on the
    pods' volumes), or with --group-only, it moves the consumer group only, and the plan says
    so: delete the stage's recovery claims before it starts again, or its snapshots win.
    Exit codes: 0 done (or a dry run); 1 declined at the prompt; 2 error, the stage running, or
    no terminal and no --yes.
    """
    (stage,) = _stages([stage])
    chosen = [to_earliest, to_latest, to_datetime is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("give exactly one of --to-earliest, --to-latest, --to-datetime")
    target: Target
    if to_datetime is not None:
        target = to_datetime if to_datetime.tzinfo else to_datetime.replace(tzinfo=UTC)
    else:
        target = "earliest" if to_earliest else "latest"
    settings = load_settings()
    directory = recovery_directory(settings, stage)
    files = [] if group_only else partition_files(directory)
    also = read_recovery(directory).input_topics(settings, stage) if files else []
    topics = describe_input_topics(settings, stage, also=also)
    partitions = [(t.name, p) for t in topics.values() for p in t.partitions]
    check_stopped(settings, stage, files, partitions, assume_stopped=assume_stopped)
    plan = _plan_table(settings, stage, target, directory, partitions, bool(files))
    if dry_run:
        console().print(plan)
        return
    confirm_plan(plan, f"Reset the recovery state of {stage} as shown?", what="reset", yes=yes)
    backup = back_up(directory) if files else None
    try:
        moved = reset_positions(
            settings, stage, target, assume_stopped=assume_stopped, group_only=group_only
        )
    except RecoveryStateError as exc:
        if backup is None:
            raise
        raise RecoveryStateError(f"{exc} (the files as they were are in {backup})") from None
    _table(f"{stage} will resume from", moved)
    if backup is not None:
        console().print(Text(f"the recovery files as they were are in {backup}"))


def back_up(directory: Path, now: datetime | None = None) -> Path:
    """Copy the stage's recovery files (partitions, their SQLite journals, the cluster and
    topic markers) to ``<directory>/backup-<UTC time>/``; returns that folder."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = directory / f"backup-{stamp}"
    backup.mkdir(parents=False, exist_ok=False)
    names = [p.name for p in directory.glob("part-*.sqlite3*")] + [CLUSTER_MARKER, TOPICS_MARKER]
    for name in sorted(names):
        source = directory / name
        if source.is_file():
            shutil.copy2(source, backup / name)
    return backup


def _plan_table(
    settings: Settings,
    stage: str,
    target: Target,
    directory: Path,
    partitions: list[tuple[str, int]],
    has_state: bool,
) -> Table:
    """Each input partition: where the stage resumes now and where it would after the reset."""
    if has_state:
        now = {(p.topic, p.partition): p.offset for p in input_positions(settings, stage)}
    else:
        now = group_positions(settings, stage, partitions)
    after = target_offsets(settings, partitions, target)
    where = target.isoformat() if isinstance(target, datetime) else target
    table = Table(title=f"reset {stage} to {where} ({directory})")
    for column in ("topic", "partition", "now", "after"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for topic, partition in sorted(after):
        current = now.get((topic, partition))
        table.add_row(
            topic,
            str(partition),
            "-" if current is None else _offset(current),
            f"{after[topic, partition]:,}",
        )
    table.caption = (
        "moves the recovery snapshots and the consumer group; the files are backed up first"
        if has_state
        else NO_FILES_HERE
    )
    return table


NO_FILES_HERE = (
    'no recovery files here (or --group-only): moves the consumer group only ("now" is its '
    "offset), which a "
    "stage starts from when it has no snapshot. A stage whose snapshots are elsewhere resumes "
    "from them instead: in Kubernetes, on its pods' recovery volumes, so delete those claims "
    'before it starts again (docs/operations.md, "Offsets in Kubernetes")'
)


def _stages(stages: list[str] | None) -> list[str]:
    unknown = [s for s in stages or [] if s not in STAGE_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s) {unknown}; one of {', '.join(STAGE_NAMES)}")
    return list(stages or STAGE_NAMES)


def _position_document(p: InputPosition) -> dict[str, Any]:
    return {
        "step_id": p.step_id,
        "topic": p.topic,
        "partition": p.partition,
        "offset": p.offset,
        "epoch": p.epoch,
        "file": str(p.file),
    }


def _table(title: str, positions: list[InputPosition]) -> None:
    table = Table(title=title)
    for column in ("topic", "partition", "offset", "epoch"):
        table.add_column(column, justify="right" if column != "topic" else "left")
    for p in positions:
        table.add_row(p.topic, str(p.partition), _offset(p.offset), str(p.epoch))
    console().print(table)


def _offset(offset: int) -> str:
    """An offset, or the logical one a source starts a partition it has read nothing of at."""
    return {-2: "beginning", -1: "end"}.get(offset, f"{offset:,}")
