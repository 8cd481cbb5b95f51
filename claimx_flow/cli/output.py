"""``--output table|json`` (``-o``), the same on every read command, as kubectl has it.

``json`` prints one document on stdout and nothing else there: progress bars, warnings and
errors go to stderr, so ``claimx lag -o json | jq …`` always parses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
