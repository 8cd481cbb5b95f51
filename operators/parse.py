"""Parse each item, and route what cannot be parsed to a stream of its own.

As Bytewax's own Kafka operators do, a step that can fail returns two streams: the parsed items
and the errors, each error already a value the dataflow can send somewhere (a dead-letter
record, say). One bad item never fails the step, so it never stops its batch-mates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import bytewax.operators as op
from bytewax.dataflow import Stream

X = TypeVar("X")
Y = TypeVar("Y")
E = TypeVar("E")


@dataclass(frozen=True)
class Parsed(Generic[Y, E]):
    oks: Stream[Y]
    errs: Stream[E]


def parse_or_route(
    step_id: str,
    up: Stream[X],
    parse: Callable[[X], Y | E],
    *,
    error_type: type[E],
    on_exception: Callable[[X, Exception], E],
) -> Parsed[Y, E]:
    """``parse`` each item into a value or an ``error_type``; an exception ``parse`` raises
    becomes an error too, through ``on_exception``."""

    def total(item: X) -> Y | E:
        try:
            return parse(item)
        except Exception as exc:
            return on_exception(item, exc)

    parsed = op.map(f"{step_id}-parse", up, total)
    split = op.branch(f"{step_id}-split", parsed, lambda value: isinstance(value, error_type))
    return Parsed(oks=cast(Stream[Y], split.falses), errs=cast(Stream[E], split.trues))
