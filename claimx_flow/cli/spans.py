"""Spans of time as operators type them on the command line: ``24h``, ``90m``, ``7d``."""

from __future__ import annotations

import re
from datetime import timedelta

import typer

_SPAN = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SPAN_EXAMPLES = "24h, 90m, 7d"


def span_or_none(text: str, option: str) -> timedelta | None:
    """``text`` as a span, or None if it is not written as one."""
    match = _SPAN.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return timedelta(seconds=float(match["amount"]) * _UNIT_S[match["unit"]])
    except OverflowError:
        raise typer.BadParameter(f"{text!r} is too long a span", param_hint=option) from None


def parse_span(text: str, option: str) -> timedelta:
    """``text`` as a span; anything else is a bad parameter of ``option``."""
    span = span_or_none(text, option)
    if span is None:
        raise typer.BadParameter(f"{text!r} is not a span ({SPAN_EXAMPLES})", param_hint=option)
    return span


def span_text(seconds: int) -> str:
    """A span as these options take it, largest units first: ``7d``, ``1h``, ``1d10m``."""
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
