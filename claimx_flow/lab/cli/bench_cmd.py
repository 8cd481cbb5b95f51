"""``claimx bench``: each stage through real Kafka, measured beside the machine's raw limit.

The work lives in ``claimx_flow.lab.bench``; this is its command line.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from claimx_flow.lab.bench.harness import BenchConfig
from claimx_flow.lab.bench.progress import Phases
from claimx_flow.lab.bench.report import Report, notes_markdown, results_markdown
from claimx_flow.lab.bench.suite import ORDER, run_suite
from claimx_flow.lab.bench.targets import evaluate, targets_markdown
from claimx_flow.terminal import emit_json

app = typer.Typer(
    help="Benchmark the stages on a dedicated broker and the API simulator.",
    no_args_is_help=True,
)


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


EVENTS = typer.Option(
    None, "--events", "-n", min=1, help="Workload size of every stage (default: each its own)."
)
MEDIA_BYTES = typer.Option(64 * 1024, "--media-bytes", min=1, help="Size of each media file.")
LARGE_MEDIA_BYTES = typer.Option(
    5 * 1024 * 1024, "--large-media-bytes", min=1, help="File size of the download bytes/s run."
)
LARGE_FILES = typer.Option(200, "--large-files", min=0, help="Files in that run (0: skip it).")
CONCURRENCY = typer.Option(20, "--concurrency", min=1, help="Downloads in flight.")
PARTITIONS = typer.Option(6, "--partitions", min=1, help="Partitions of every bench topic.")
SEED = typer.Option(8, "--seed", help="Seed of every generated workload.")
RETRY_SPREAD = typer.Option(10.0, "--retry-spread", min=0.0, help="Seconds the due times span.")
RETRY_LEAD = typer.Option(15.0, "--retry-lead", min=1.0, help="Seconds before the first is due.")
API_LATENCY = typer.Option(
    0.0,
    "--api-latency-ms",
    min=0.0,
    help="Milliseconds the simulated API waits before each answer (media files are not slowed).",
)
TIMEOUT = typer.Option(300.0, "--timeout", min=1.0, help="Longest a stage process may run.")
OWN_BROKER = typer.Option(
    False, "--own-broker", help="Start a broker even when KAFKA_BOOTSTRAP_SERVERS is set."
)
KEEP = typer.Option(False, "--keep", help="Keep the work directory (logs, tables, files).")
JSON_OUT = typer.Option(False, "--json", help="Print the JSON report on stdout instead.")
OUT = typer.Option(None, "--out", help="Also write the JSON report to this file.")
WORKERS = typer.Option(
    1, "--workers", "-w", min=1, help="Worker threads of each stage process (bytewax -w)."
)
PROCESSES = typer.Option(
    1, "--processes", "-p", min=1, help="Processes of each stage: a Bytewax cluster (-i/-a)."
)


def _scale_to(default: int) -> Any:  # typer.Option is typed Any, as every default here
    return typer.Option(
        default,
        "--scale-to",
        min=0,
        help="Also run ingest and enrich file-heavy on this many processes, compared with one "
        "(0: no scaling rows).",
    )


PROFILE = typer.Option(
    None, "--profile", help="Profile each stage process with py-spy into this directory."
)


def _run(stages: tuple[str, ...], config: BenchConfig, json_out: bool, out: Path | None) -> None:
    command = "claimx bench " + shlex.join(sys.argv[1:]).split("bench ", 1)[-1]
    with Phases(Console(stderr=True)) as phases:
        report = run_suite(stages, config, phases, command)
    targets = evaluate(report.results)
    document = report.to_json(targets)
    if out is not None:
        out.write_text(json.dumps(document, indent=2) + "\n")
    if json_out:
        emit_json(document)
    else:
        _print(report, targets)
    if any(not r.ok for r in report.results):
        raise typer.Exit(1)


def _print(report: Report, targets: list[dict[str, object]]) -> None:
    machine = report.machine
    console().print(
        f"\n[bold]claimx bench[/] on {machine['nproc']} x {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB; load {machine['load_average']} → {report.load_after}; "
        f"{report.config.get('broker', '')}\n",
        highlight=False,
    )
    # Plain prints: Markdown to copy as it is, never wrapped at the terminal's width.
    print(results_markdown(report.results), end="\n\n")
    print(targets_markdown(targets), end="\n\n")
    print(notes_markdown(report.results))


def _command(stages: tuple[str, ...], doc: str, scale_to_default: int = 0) -> None:
    def command(
        events: int | None = EVENTS,
        media_bytes: int = MEDIA_BYTES,
        large_media_bytes: int = LARGE_MEDIA_BYTES,
        large_files: int = LARGE_FILES,
        concurrency: int = CONCURRENCY,
        partitions: int = PARTITIONS,
        seed: int = SEED,
        retry_spread: float = RETRY_SPREAD,
        retry_lead: float = RETRY_LEAD,
        api_latency_ms: float = API_LATENCY,
        timeout: float = TIMEOUT,
        own_broker: bool = OWN_BROKER,
        keep: bool = KEEP,
        json_out: bool = JSON_OUT,
        out: Path | None = OUT,
        profile: Path | None = PROFILE,
        workers: int = WORKERS,
        processes: int = PROCESSES,
        scale_to: int = _scale_to(scale_to_default),
    ) -> None:
        config = BenchConfig(
            seed=seed,
            items=events,
            partitions=partitions,
            media_bytes=media_bytes,
            large_media_bytes=large_media_bytes,
            large_files=large_files,
            concurrency=concurrency,
            retry_spread_s=retry_spread,
            retry_lead_s=retry_lead,
            api_latency_ms=api_latency_ms,
            stage_timeout_s=timeout,
            own_broker=own_broker,
            keep=keep,
            profile_dir=profile.resolve() if profile is not None else None,
            workers=workers,
            processes=processes,
            scale_to=scale_to,
        )
        _run(stages, config, json_out, out)

    command.__doc__ = doc
    name = stages[0] if len(stages) == 1 else "all"
    app.command(name)(command)


_command(("ingest",), "ingest on the mixed workload, beside a bare Kafka passthrough.")
_command(("enrich",), "enrich on file-heavy and project-created, beside the simulator's rate.")
_command(("download",), "download of 64 KiB and 5 MiB files, beside a bare fetch loop.")
_command(("upload",), "upload to local storage, beside a bare store loop.")
_command(("retry",), "retry: 100,000 messages held in one tier, memory and release lateness.")
_command(ORDER, "Every stage in turn (ingest and enrich also on 2 processes), then the targets.", 2)
