"""Reading messages off the wire, and saying in one short line why one could not be read.

A message that cannot be read is data for a DLQ, not a crash: the stage catches
``MalformedMessageError`` and dead-letters the original bytes with ``reason`` as the error.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel, ValidationError

from claimx_flow.errors import ClaimxError

MAX_REASON_CHARS = 300
MAX_JSON_DEPTH = 700
"""Deepest nesting a message may have. Python's ``json`` stops at its recursion limit, which
counts the caller's frames too: a document some 990 levels deep was refused as "nested too
deeply" when read from one call path and as a syntax error from another. Below this depth
``json`` has room on any of our call paths, so one message always gets one reason."""
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


class MalformedMessageError(ClaimxError, ValueError):
    """A message (raw event or stage message) that cannot be parsed; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_json_object(value: bytes) -> dict[str, Any]:
    """Decode UTF-8 JSON that must be an object, naming which of the three it failed."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessageError(f"invalid UTF-8 at byte {exc.start}") from None
    # Counting brackets costs little; only a message with that many is measured properly.
    if value.count(b"[") + value.count(b"{") > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH:
        raise MalformedMessageError("invalid JSON: nested too deeply")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedMessageError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:  # a caller already near the recursion limit
        raise MalformedMessageError("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # a number past Python's int-from-text limit (4300 digits)
        raise MalformedMessageError(f"invalid JSON: {_short(str(exc))[:120]}") from None
    if not isinstance(document, dict):
        raise MalformedMessageError(f"not a JSON object (got {_json_kind(document)})")
    return document


def json_fields(value: bytes | None) -> dict[str, Any]:
    """A message's top-level JSON fields, or none: what the operator's tools (a DLQ listing, a
    trace) read of any message, however malformed, where ``load_json_object`` says why not."""
    try:
        return load_json_object(value or b"")
    except MalformedMessageError:
        return {}


def named_fields(fields: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``fields`` with each of ``model``'s fields also under its Python name, taken from the
    first spelling the model accepts (``projectId`` for ``project_id``), as validation would:
    the operator's tools read ids off a message that failed validation with the model's own
    aliases, so a camelCase event is not a message without ids."""
    named = dict(fields)
    for name, choices in _alias_choices(model).items():
        present = next((choice for choice in choices if choice in fields), None)
        if present is not None:
            named[name] = fields[present]
    return named


@functools.cache
def _alias_choices(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    spellings = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias or name]
        spellings[name] = tuple(choice for choice in choices if isinstance(choice, str))
    return spellings


def loose_text(value: object) -> str | None:
    """A JSON field as an id's text for display and filters, or ``None`` where it is none
    (``7.0`` reads ``"7"``, as ``normalise_id`` would have it)."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        text = str(value).strip()
    except ValueError:  # an int past Python's int-to-text limit (4300 digits)
        return None
    return text or None


def reason_from(
    error: ValidationError,
    model: type[BaseModel] | None = None,
    *,
    noun: str = "field",
    prefix: str = "",
) -> str:
    """One line naming each bad field: ``missing field project_id; bad type for field …: …``.

    Fields are named by their Python name even when the message used an alias (``projectId``),
    so one kind of problem always reads the same; ``noun`` and ``prefix`` name them as the
    carrier does (``header claimx.attempt``).
    """
    names = _canonical_names(model) if model is not None else {}
    parts = []
    for detail in error.errors(include_url=False, include_input=False):
        loc = [str(part) for part in detail["loc"]]
        if loc:
            loc[0] = names.get(loc[0], loc[0])
        field = f"{noun} {prefix}{'.'.join(loc)}" if loc else "message"
        kind = detail["type"]
        if kind == "missing":
            parts.append(f"missing {field}")
        elif kind.endswith("_type") or kind == "model_attributes_type":
            parts.append(f"bad type for {field}: {_short(detail['msg'])}")
        else:
            parts.append(f"bad value for {field}: {_short(detail['msg'])}")
    reason = "; ".join(parts)
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _canonical_names(model: type[BaseModel]) -> dict[str, str]:
    return {choice: name for name, choices in _alias_choices(model).items() for choice in choices}


def _short(message: str) -> str:
    """Pydantic's messages, minus its ``Value error, `` prefix and first capital."""
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _json_kind(document: object) -> str:
    if document is None:
        return "null"
    if isinstance(document, bool):
        return "boolean"
    if isinstance(document, int | float):
        return "number"
    if isinstance(document, str):
        return "string"
    if isinstance(document, list):
        return "array"
    return type(document).__name__


def _depth(text: str) -> int:
    """How deep the brackets of ``text`` nest, outside its strings (well formed or not)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest
