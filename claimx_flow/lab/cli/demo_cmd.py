"""``claimx demo``: the whole pipeline end to end on embedded defaults.

Brings up the local stack (Kafka and the API simulator), creates the topics, feeds a generated
workload, runs the five stage dataflows until the workload has settled, stops them gracefully
and prints what ended where.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings, load_settings
from claimx_flow.kafka.topics import admin_client, ensure_topics, pipeline_topics
from claimx_flow.lab.cli import stack_cmd
from claimx_flow.lab.inventory import Inventory, stored_event_ids, take_inventory
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.lab.stack import Stack
from claimx_flow.models import RawEvent
from claimx_flow.startup.recovery import (
    RecoveryMismatch,
    check_recovery_cluster,
    kafka_cluster_id,
    reset_recovery,
)


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


QUIET_S = 5.0


def demo(
    events: int = typer.Option(5000, min=1, help="Events to generate."),
    projects: int = typer.Option(200, min=1, help="Projects they are spread over."),
    mix: str = typer.Option("mixed", help="project-created, file-heavy or mixed."),
    timeout: float = typer.Option(600, help="Give up after this many seconds."),
) -> None:
    """Run the pipeline end to end on a generated workload and summarise the outcome."""
    stack_cmd.up()
    for key, value in Stack().live_env().items():
        os.environ.setdefault(key, value)
    settings = load_settings()
    ensure_topics(admin_client(settings), pipeline_topics(settings))

    plan = EventPlan(count=events, projects=projects, mix=mix)  # type: ignore[arg-type]
    lines = list(event_lines(plan))
    event_ids = {RawEvent.from_source(json.loads(line)).event_id for _, line in lines}
    produced = produce_lines(lines, settings.claimx_events_topic, settings)
    console().print(
        f"fed {produced:,} events ({len(event_ids):,} distinct) for {projects} projects"
    )

    _forget_other_clusters(settings)
    pipeline = Pipeline(settings, settings_env(settings), settings.claimx_data_dir / "logs")
    calls_before = _api_calls()
    started = time.monotonic()
    pipeline.start()
    try:
        after = _wait_until_settled(settings, pipeline, event_ids, timeout)
    finally:
        with console().status("stopping the stages gracefully…"):
            pipeline.stop()
    elapsed = time.monotonic() - started
    _summary(settings, after, produced, _api_calls() - calls_before, elapsed)


def _forget_other_clusters(settings: Settings) -> None:
    """The demo's broker is new after every ``stack down``: old offsets would skip its data."""
    cluster = kafka_cluster_id(settings)
    for stage in STAGE_NAMES:
        try:
            check_recovery_cluster(settings, stage, cluster)
        except RecoveryMismatch:
            console().print(
                f"{stage}: recovery state is from an earlier local Kafka; starting over"
            )
            reset_recovery(settings, stage)


def _wait_until_settled(
    settings: Settings, pipeline: Pipeline, event_ids: set[str], timeout: float
) -> Inventory:
    """Until every fed event is in ``claimx_events`` and nothing has changed for a while."""
    deadline = time.monotonic() + timeout
    last: Inventory | None = None
    still_since = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}"))
    with Progress(*columns, TimeElapsedColumn(), console=console()) as progress:
        accounted = progress.add_task("events in claimx_events", total=len(event_ids))
        files = progress.add_task("files uploaded", total=None)
        while time.monotonic() < deadline:
            dead = pipeline.dead()
            if dead:
                raise typer.Exit(_died(pipeline, dead))
            now = take_inventory(settings)
            seen = len(event_ids & stored_event_ids(settings))
            progress.update(accounted, completed=seen)
            progress.update(files, completed=now.rows["claimx_attachments"])
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= QUIET_S and seen == len(event_ids):
                return now
            time.sleep(1)
    console().print("[yellow]timed out before the pipeline settled[/]")
    return last or take_inventory(settings)


def _died(pipeline: Pipeline, dead: list[str]) -> int:
    for stage in dead:
        log = pipeline.log_dir / f"{stage}.log"
        console().print(f"[red]stage {stage} stopped[/]; last lines of {log}:")
        console().print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    return 1


def _api_calls() -> int:
    origin = _simulator_origin()
    if origin is None:
        return 0
    with urllib.request.urlopen(f"{origin}/_admin/stats", timeout=5) as reply:
        return int(json.load(reply).get("api_calls", 0))


def _simulator_origin() -> str | None:
    running = Stack().running().get("simulator")
    return running.extra.get("origin") if running else None


def _summary(
    settings: Settings, inventory: Inventory, produced: int, api_calls: int, elapsed: float
) -> None:
    table = Table(title=f"claimx demo: {produced:,} events in {elapsed:.0f}s")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, rows in inventory.rows.items():
        table.add_row(f"rows in {name}", f"{rows:,}")
    table.add_row("files uploaded", f"{inventory.stored_files:,}")
    table.add_row("bytes uploaded", f"{inventory.attachment_bytes:,}")
    for dlq, count in inventory.dlq(settings).items():
        table.add_row(f"{dlq} DLQ messages", f"{count:,}")
    table.add_row("API calls", f"{api_calls:,}")
    table.add_row("API calls per event", f"{api_calls / produced:.3f}" if produced else "-")
    console().print(table)
    data = Path(settings.claimx_data_dir).resolve()
    console().print(f"tables: {data / 'tables'}\nfiles:  {data / 'files'}\nlogs:   {data / 'logs'}")
    console().print("stop the local stack with [bold]claimx stack down[/]")
