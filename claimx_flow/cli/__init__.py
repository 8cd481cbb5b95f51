"""The ``claimx`` command: one Typer app, one sub-command per concern, each loaded when it runs.

Every sub-command lives in a module of its own, named in :data:`COMMANDS` with the one line
``claimx --help`` shows for it. The module is imported only when its command runs, so
``claimx --help`` and a quick ``claimx lag`` do not pay for Delta, Arrow or the lab, and the
lab's commands (stack, simulate, demo, chaos, bench) load nothing of it until one of them runs.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click as click  # typer 0.29 carries its own click; its groups use it
from typer.core import TyperCommand, TyperGroup

from claimx_flow.terminal import run_guarded

PACKAGE = "claimx-flow"


@dataclass(frozen=True)
class Entry:
    """A sub-command: ``target`` is ``module:attr``, a Typer app or a command function."""

    target: str
    help: str


COMMANDS: dict[str, Entry] = {
    "stack": Entry(
        "claimx_flow.lab.cli.stack_cmd:app",
        "Start, inspect and stop the local stack (Kafka and the API simulator on 127.0.0.1).",
    ),
    "topics": Entry(
        "claimx_flow.cli.topics_cmd:app", "Create and list the pipeline's Kafka topics."
    ),
    "config": Entry(
        "claimx_flow.cli.config_cmd:app", "Show and validate the effective configuration."
    ),
    "simulate": Entry(
        "claimx_flow.lab.cli.simulate_cmd:app",
        "Simulate the ClaimX API and generate raw events that refer to it.",
    ),
    "api": Entry("claimx_flow.cli.api_cmd:app", "Talk to the ClaimX API."),
    "dlq": Entry(
        "claimx_flow.dlq.cli:app",
        "Inspect, replay and purge the dead-letter queues (events, enrichment, download).",
    ),
    "recovery": Entry(
        "claimx_flow.cli.recovery_cmd:app",
        "Create, show and reset the stages' recovery state.",
    ),
    "delta": Entry(
        "claimx_flow.cli.delta_cmd:app", "Maintain the Delta tables (local or OneLake)."
    ),
    "files": Entry(
        "claimx_flow.cli.files_cmd:app",
        "Look after the uploaded media files: sweep the staging files of killed uploads.",
    ),
    "bench": Entry(
        "claimx_flow.lab.cli.bench_cmd:app",
        "Benchmark the stages on a dedicated broker and the API simulator.",
    ),
    "demo": Entry(
        "claimx_flow.lab.cli.demo_cmd:demo",
        "Run the pipeline end to end on a generated workload and summarise the outcome.",
    ),
    "chaos": Entry(
        "claimx_flow.lab.cli.chaos_cmd:chaos",
        "Run the pipeline on its own broker and simulator under SIGKILLs, broker restarts and "
        "API faults, then reconcile exactly. Exit code 0 when nothing was lost or doubled.",
    ),
    "check": Entry(
        "claimx_flow.cli.check_cmd:check",
        "Check that the pipeline can run here; exit 1 if anything fails, 2 on bad settings "
        "or an unreachable Kafka, API or OneLake.",
    ),
    "lag": Entry(
        "claimx_flow.cli.lag_cmd:lag",
        "Show topic, partition, end offset, committed offset and lag for each stage's group, "
        "then the depth of the DLQs those stages write (high minus low watermark). Exit 1 when "
        "an input topic is missing.",
    ),
    "trace": Entry(
        "claimx_flow.cli.trace_cmd:trace_command",
        "Follow one event, project or media file through the pipeline and say where it ended.",
    ),
    "top": Entry(
        "claimx_flow.cli.top_cmd:top",
        "Watch the pipeline live: rates, lag, retry tiers, DLQs and readiness per stage process.",
    ),
    "backfill": Entry(
        "claimx_flow.cli.backfill_cmd:backfill_command",
        "Load an export into a topic; then run the ingester with CLAIMX_EVENTS_TOPIC=<topic>.",
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module behind ``name`` and turn what it defines into a click command."""
    module_name, attr = COMMANDS[name].target.split(":")
    target: Any = getattr(importlib.import_module(module_name), attr)
    command: click.Command
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)  # a group even when it holds one command
    else:
        holder = typer.Typer(add_completion=False)
        holder.command(name)(target)
        command = typer.main.get_command(holder)
    command.name = name
    return command


class _Listed(TyperCommand):
    """What ``claimx --help`` lists for a command it has not loaded."""

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, short_help=help, help=help)


class LazyGroup(TyperGroup):
    """A Typer group whose sub-commands are imported when they run, not when it starts."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return _Listed(cmd_name, COMMANDS[cmd_name].help)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in COMMANDS:
            return args[0], load_command(args[0]), args[1:]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="claimx",
    cls=LazyGroup,
    help="Operate the ClaimX ingestion pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"claimx {version(PACKAGE)}")
    except PackageNotFoundError:
        typer.echo("claimx (not installed: no package metadata)")
    raise typer.Exit()


_entry_point = False
"""True in the ``claimx`` process itself (:func:`main`); False where a caller (a test) invokes
:data:`app`, so ``CLAIMX_ENV`` is defaulted only for a process of its own."""


@app.callback()
def _configure(
    ctx: typer.Context,
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Kafka client logs (LOG_LEVEL=INFO at least)."
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the installed version and exit.",
    ),
) -> None:
    """Quiet the Kafka client unless asked, and use the local stack when nothing else is set."""
    entry = COMMANDS.get(ctx.invoked_subcommand or "")
    lab = entry is not None and entry.target.startswith("claimx_flow.lab.")
    prepare(verbose, lab=lab, entry_point=_entry_point)


def prepare(verbose: bool = False, *, lab: bool = False, entry_point: bool = False) -> None:
    """What every command does first: log to stderr (``LOG_FORMAT``; ``LOG_LEVEL``, else
    warnings only, ``-v`` at least INFO; secrets redacted), quiet the Kafka client's and the
    Azure SDK's logs unless asked, and take the addresses of a local stack started on this machine
    (``claimx stack up``) for any setting the environment leaves unset.

    In a process of its own (``entry_point``) it also defaults ``CLAIMX_ENV``: ``local`` for a
    lab command or where a local stack is found, else ``production``, where a missing
    ``KAFKA_BOOTSTRAP_SERVERS`` (or ``CLAIMX_API_*`` for what calls the API) stops the command.
    """
    from claimx_flow.config import adopt_default_environment, configured_secrets, local_stack_found
    from claimx_flow.runtime import logs

    level = logs.parse_level(os.environ.get("LOG_LEVEL"), logging.WARNING)
    logs.configure(
        logs.parse_format(os.environ.get("LOG_FORMAT")),
        min(level, logging.INFO) if verbose else level,
        secrets=configured_secrets(),
        text_format="%(message)s",
        replace=False,
    )
    if not verbose:
        from claimx_flow.kafka.clients import LIBRDKAFKA_LOGGER

        LIBRDKAFKA_LOGGER.setLevel(logging.CRITICAL)
        # The Azure SDK warns in many lines per credential it tried (three copies when the
        # chain fails) before the command's own one red line says the same.
        logging.getLogger("azure").setLevel(logging.ERROR)
    if local_stack_found():
        # Only a developer's machine has one; elsewhere nothing of the lab is imported.
        from claimx_flow.lab.stack import Stack

        for key, value in Stack().live_env().items():
            os.environ.setdefault(key, value)
    if entry_point:
        adopt_default_environment(local=lab)


def main() -> None:
    """Entry point: a known failure is one red line and exit code 2, never a traceback."""
    global _entry_point
    _entry_point = True
    run_guarded(lambda: app())  # looked up at the call: a test may stand another in
