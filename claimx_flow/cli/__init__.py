"""The ``claimx`` command: one Typer app, one sub-command group per concern."""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console

from claimx_flow.cli import (
    api_cmd,
    backfill_cmd,
    bench_cmd,
    chaos_cmd,
    check_cmd,
    config_cmd,
    delta_cmd,
    demo_cmd,
    lag_cmd,
    recovery_cmd,
    simulate_cmd,
    stack_cmd,
    topics_cmd,
)
from claimx_flow.dlq import cli as dlq_cli
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka_config import LIBRDKAFKA_LOGGER
from claimx_flow.stack import Stack

app = typer.Typer(
    name="claimx",
    help="Operate the ClaimX ingestion pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(topics_cmd.app, name="topics")
app.add_typer(config_cmd.app, name="config")
app.add_typer(simulate_cmd.app, name="simulate")
app.add_typer(api_cmd.app, name="api")
app.add_typer(dlq_cli.app, name="dlq")
app.add_typer(recovery_cmd.app, name="recovery")
app.add_typer(delta_cmd.app, name="delta")
app.add_typer(bench_cmd.app, name="bench")
app.command("demo")(demo_cmd.demo)
app.command("chaos")(chaos_cmd.chaos)
app.command("check")(check_cmd.check)
app.command("lag")(lag_cmd.lag)
app.command("backfill")(backfill_cmd.backfill_command)

EXIT_ERROR = 2


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Kafka client logs."),
) -> None:
    """Quiet the Kafka client unless asked, and use the local stack when nothing else is set."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if not verbose:
        LIBRDKAFKA_LOGGER.setLevel(logging.CRITICAL)
    for key, value in Stack().live_env().items():
        os.environ.setdefault(key, value)


def main() -> None:
    """Entry point: a known failure is one red line and exit code 2, never a traceback."""
    try:
        app()
    except ClaimxError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_ERROR)
