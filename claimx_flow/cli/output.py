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
