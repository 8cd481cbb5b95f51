"""``--output table|json`` (``-o``), the same on every read command, as kubectl has it.

``json`` prints one document on stdout and nothing else there: progress bars, warnings and
errors go to stderr, so ``claimx lag -o json | jq …`` always parses.
"""

from __future__ import annotations

import json
import re
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


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BACKTRACE = re.compile(r"(?i)\bstack backtrace:")
MAX_LINE_CHARS = 500


def one_line(text: str) -> str:
    """A peer's error as one line: its terminal colours stripped (delta-rs writes them whatever
    the output is), its lines joined, a Rust backtrace (``RUST_BACKTRACE``) left off, and at
    most ``MAX_LINE_CHARS`` kept."""
    text = _BACKTRACE.split(_ESCAPES.sub("", text), maxsplit=1)[0]
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"
