"""What every command, the lab's too, does the same at the terminal, as kubectl does:
``--output table|json`` (``-o``) on read commands; a destructive command's plan and question
(``confirm_plan``, ``--yes`` for scripts); and the one red line (``print_error``,
``run_guarded`` for an entry point) that any failure is.

``json`` prints one document on stdout and nothing else there: progress bars, warnings and
errors go to stderr, so ``claimx lag -o json | jq …`` always parses.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import typer

EXIT_ERROR = 2
"""Bad settings or arguments, or a broken peer (Kafka, the API, storage): one red line."""
EXIT_DECLINED = 1
"""A destructive command's question answered no: nothing changed."""


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OUTPUT_OPTION: Any = typer.Option(
    Output.TABLE,
    "--output",
    "-o",
    case_sensitive=False,
    help="table for people, or json: one document on stdout for scripts.",
)


def emit_json(document: Any) -> None:
    """The command's one JSON document, on stdout: strict JSON, a number that is none (a NaN or
    an infinity a stage's metrics may hold) written as null."""
    typer.echo(json.dumps(_finite(document), indent=2, ensure_ascii=False, default=str))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def error_line(message: str) -> str:
    """``message`` fit for the one red line: the configured secrets (the environment's and the
    config file's) and URL queries masked, a peer's many coloured lines made one, and read as
    text, not markup."""
    from rich.markup import escape

    from claimx_flow.config import configured_secrets
    from claimx_flow.models.redaction import mask_url_queries, one_line, redact

    return escape(one_line(mask_url_queries(redact(message, configured_secrets()))))


def print_error(message: str) -> None:
    """The one red line, on stderr."""
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {error_line(message)}", highlight=False
    )


def has_terminal() -> bool:
    """Whether there is a person to ask: stdin is a terminal."""
    return sys.stdin.isatty()


def confirm_plan(plan_view: Any, question: str, *, what: str, yes: bool, show: bool = True) -> None:
    """A destructive command's plan on stderr, then its question. ``--yes`` (``yes``) goes on
    once the plan is shown (``show=False``: a JSON document will carry it); with no terminal to
    ask on, it refuses (exit 2) rather than guess; "no" changes nothing (exit 1)."""
    from rich.console import Console

    err = Console(stderr=True)
    if yes:
        if show:
            err.print(plan_view)
        return
    err.print(plan_view)
    if not has_terminal():
        print_error(
            f"refusing to {what} without confirmation: stdin is not a terminal; "
            "pass --yes to go ahead"
        )
        raise typer.Exit(EXIT_ERROR)
    if not typer.confirm(question, err=True):  # stdout keeps to the one JSON document
        err.print("nothing changed")
        raise typer.Exit(EXIT_DECLINED)


def run_guarded(command: Callable[[], object]) -> None:
    """Run an entry point's Typer app: a known failure, or a broken peer no command turned
    into its own error, is one masked red line and exit code 2, never a traceback."""
    from claimx_flow.errors import ClaimxError

    try:
        command()
    except ClaimxError as exc:
        _fail(str(exc))
    except Exception as exc:
        if not _peer_failure(exc):
            raise
        _fail(_described(exc))


def _peer_failure(exc: BaseException) -> bool:
    """A broken peer (Kafka, storage, a socket, a file or folder that is missing or refused)
    that no command turned into its own error: still one red line, since a traceback tells an
    operator nothing more."""
    kafka = sys.modules.get("confluent_kafka")
    if kafka is not None and isinstance(exc, kafka.KafkaException):
        return True
    azure = sys.modules.get("azure.core.exceptions")
    if azure is not None and isinstance(exc, azure.AzureError):
        return True
    return isinstance(exc, OSError)  # ConnectionError and TimeoutError among them


def _described(exc: BaseException) -> str:
    """A peer's failure in its own words: librdkafka's sentence, not ``KafkaError{code=…}``."""
    kafka = sys.modules.get("confluent_kafka")
    if kafka is not None and isinstance(exc, kafka.KafkaException):
        error = exc.args[0] if exc.args else None
        reason = error.str() if isinstance(error, kafka.KafkaError) else str(exc)
        where = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        return f"Kafka at {where}: {reason}" if where else f"Kafka: {reason}"
    return f"{type(exc).__name__}: {exc}"


def _fail(message: str) -> None:
    print_error(message)
    sys.exit(EXIT_ERROR)
