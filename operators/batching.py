"""Keyed batching with a hard latency bound.

``op.collect`` restarts its timeout on every new item, so a steady trickle can hold a batch
forever. Here the deadline is set by the first item of a batch and never moves: a batch leaves
when it is full or when its first item has waited ``max_latency``, whichever comes first. Items
waiting in a batch are part of the step's recovery state, so a crash loses none of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.operators import KeyedStream, StatefulBatchLogic

V = TypeVar("V")

_Snapshot = tuple[list[V], datetime | None]


class _BatchLogic(StatefulBatchLogic[V, list[V], _Snapshot[V]], Generic[V]):
    def __init__(self, max_size: int, max_latency: timedelta, resume: _Snapshot[V] | None) -> None:
        self._max_size = max_size
        self._max_latency = max_latency
        self._items: list[V] = list(resume[0]) if resume else []
        self._deadline: datetime | None = resume[1] if resume else None

    def on_batch(self, values: list[V]) -> tuple[list[list[V]], bool]:
        if self._deadline is None:
            self._deadline = datetime.now(UTC) + self._max_latency
        self._items.extend(values)
        full = []
        while len(self._items) >= self._max_size:
            full.append(self._items[: self._max_size])
            self._items = self._items[self._max_size :]
        if not self._items:
            return full, StatefulBatchLogic.DISCARD
        if full:  # what is left starts a new batch with a fresh deadline
            self._deadline = datetime.now(UTC) + self._max_latency
        return full, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[V]], bool]:
        return self._flush()

    def on_eof(self) -> tuple[list[list[V]], bool]:
        return self._flush()

    def _flush(self) -> tuple[list[list[V]], bool]:
        items, self._items, self._deadline = self._items, [], None
        return ([items] if items else []), StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._deadline

    def snapshot(self) -> _Snapshot[V]:
        return (list(self._items), self._deadline)


def batch_by_key(
    step_id: str, up: KeyedStream[V], *, max_size: int, max_latency: timedelta
) -> KeyedStream[list[V]]:
    """Group each key's items into lists of at most ``max_size``, none older than
    ``max_latency``."""
    if max_size < 1:
        raise ValueError("max_size must be at least 1")

    def builder(resume: _Snapshot[V] | None) -> _BatchLogic[V]:
        return _BatchLogic(max_size, max_latency, resume)

    return op.stateful_batch(step_id, up, builder)
