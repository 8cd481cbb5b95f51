"""``--output table|json`` (``-o``), the same on every read command, as kubectl has it; and
the one red line (``print_error``, ``run_guarded`` for an entry point) that any failure is.

``json`` prints one document on stdout and nothing else there: progress bars, warnings and
errors go to stderr, so ``claimx lag -o json | jq …`` always parses.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import typer

EXIT_ERROR = 2
"""Bad settings or arguments, or a broken peer (Kafka, the API, storage): one red line."""


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


def emit_json(document: Mapping[str, Any]) -> None:
    """The command's one JSON document, on stdout."""
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


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
