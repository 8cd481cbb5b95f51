"""``claimx chaos``: the chaos harness for a person to run, for as long as they like."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from claimx_flow.config import load_settings
from claimx_flow.lab.chaos import BrokerControl, ChaosPlan, ChaosReport, SimulatorFaults, run_chaos
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.simulator.runner import start_subprocess
from claimx_flow.lab.simulator.server import SimulatorConfig
from claimx_flow.lab.stack import KafkaService


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


def chaos(
    minutes: float = typer.Option(2.0, min=0.1, help="How long to keep killing things."),
    events: int = typer.Option(0, min=0, help="Events to feed (default: 600 per minute)."),
    projects: int = typer.Option(50, min=1, help="Projects the events are spread over."),
    broker_restarts: int = typer.Option(1, min=0, help="Kafka broker restarts."),
    broker_down: float = typer.Option(
        1.0, min=0, help="Seconds the broker stays down at each restart (an outage)."
    ),
    kills: bool = typer.Option(True, help="SIGKILL stages (--no-kills: the outage alone)."),
    api_error_rate: float = typer.Option(0.05, min=0, max=1, help="Share of API calls failing."),
    unknown_projects: float = typer.Option(
        0.05, min=0, max=1, help="Share of projects the API answers 404 for (to the DLQ)."
    ),
    seed: int = typer.Option(7, help="Seed of the workload and the chaos."),
    keep: bool = typer.Option(False, help="Keep the run's data directory for inspection."),
) -> None:
    """Run the pipeline on its own broker and simulator under SIGKILLs, broker restarts and API
    faults, then reconcile exactly. Exit code 0 when nothing was lost or doubled."""
    workdir = Path(tempfile.mkdtemp(prefix="claimx-chaos-"))
    broker = BrokerControl(KafkaService().start(workdir / "kafka"))
    sim_config = SimulatorConfig(seed=seed)
    simulator = start_subprocess(sim_config, log_path=workdir / "simulator.log")
    try:
        settings = load_settings(
            kafka_bootstrap_servers=broker.running.endpoint,
            claimx_api_url=simulator.api_url,
            claimx_api_username=sim_config.username,
            claimx_api_password=sim_config.password,
            claimx_api_breaker_open_seconds=2,
            claimx_topic_partitions=3,
            retry_delays=[2, 4, 8, 16],
            claimx_data_dir=workdir / f"data-{uuid.uuid4().hex[:6]}",
            claimx_snapshot_interval_seconds=2,
            claimx_results_summary_seconds=2,
        )
        plan = ChaosPlan(
            seconds=minutes * 60,
            events=events or int(600 * minutes),
            projects=projects,
            waves=max(4, int(minutes * 6)),
            broker_restarts=broker_restarts,
            broker_down_s=broker_down,
            kills=kills,
            api_error_rate=api_error_rate,
            unknown_project_rate=unknown_projects,
            seed=seed,
        )
        console().print(f"chaos for {minutes:g} min: {plan.events} events; data in {workdir}")
        report = run_chaos(
            settings,
            plan,
            workdir / "logs",
            SimulatorFaults(simulator.origin),
            broker,
            progress=lambda line: console().print(f"  {line}", markup=False, emoji=False),
        )
    finally:
        simulator.stop()
        stop_process_group(broker.running.pid)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: ChaosReport) -> None:
    result = report.reconciliation
    table = Table(title="chaos reconciliation")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("SIGKILLs", str(sum(report.kills.values())))
    for stage, count in sorted(report.kills.items()):
        table.add_row(f"  {stage}", str(count))
    table.add_row("broker restarts", str(report.broker_restarts))
    table.add_row("stages restarted after stopping by themselves", str(report.restarts_after_crash))
    for stop in report.self_stops:
        table.add_row(Text(f"  {stop.described()}"), "1")  # a log line: no markup, no emoji
    table.add_row("distinct events", str(result.events))
    table.add_row("media files expected", str(result.media))
    table.add_row("files uploaded (claimx_attachments)", str(result.attachments))
    for name, count in result.dlq.items():
        named = result.dlq_ids.get(name, count)
        what = "media files" if name == "download" else "events"
        table.add_row(f"{name} DLQ", str(count) if named == count else f"{count} ({named} {what})")
    table.add_row(
        "DLQ copies routed again from one read (restarts the ledger missed)",
        str(result.routed_twice),
    )
    table.add_row("seconds to settle after the chaos", f"{report.settle_seconds:.0f}")
    console().print(table)
    if result.ok:
        console().print("[green]conservation holds[/]: nothing lost, nothing doubled")
    for problem in result.problems:
        console().print(f"[red]✗[/] {problem}")
