"""One committer per partition name, across the whole cluster, committing behind the worker.

Some writes must have a single writer: concurrent writers on one Delta table fight over
commits, and the last steps of an upload must run in order. Making each such name a partition
of a ``FixedPartitionedSink`` gives it exactly one writer in the cluster. Each partition hands
its batches to a :class:`~operators.pipelined.CommitBehind`, so the worker goes on while a
commit runs, and the partition's snapshot waits for the commits, so an epoch never counts as
done before its items are committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from operators.pipelined import MAX_PENDING, CommitBehind

T = TypeVar("T")

log = logging.getLogger(__name__)


class Committer(Protocol[T]):
    """Makes a batch durable; idempotent, because a replay after a crash commits it again."""

    def commit(self, items: list[T]) -> None: ...

    def close(self) -> None: ...


class _CommitPartition(StatefulSinkPartition[T, None], Generic[T]):
    def __init__(
        self,
        name: str,
        committer: Committer[T],
        weigh: Callable[[T], int] | None,
        max_pending: int,
        linger_s: float,
        enough: int,
    ) -> None:
        self._name = name
        self._committer = committer
        self._behind: CommitBehind[T] = CommitBehind(
            name, committer.commit, max_pending, weigh, linger_s=linger_s, enough=enough
        )

    def write_batch(self, values: list[T]) -> None:
        with self._logged():
            self._behind.add(values)

    def snapshot(self) -> None:
        with self._logged():
            self._behind.wait()

    @contextmanager
    def _logged(self) -> Iterator[None]:
        """A failed commit fails the step; Bytewax reports that as a panic of its own, so the
        Python error is logged here first, where it can still be read."""
        try:
            yield
        except Exception:
            log.exception(
                "commit of %s failed; the step fails and recovery replays the epoch", self._name
            )
            raise

    def close(self) -> None:
        self._behind.close()
        try:
            self._committer.close()
        except Exception:  # never a second error while Bytewax unwinds (see CommitBehind.close)
            log.exception("%s: closing its committer failed", self._name)


class CommitSink(FixedPartitionedSink[T, None]):
    """Takes ``(name, item)`` pairs; each name's items go to its one committer.

    ``committers`` maps each name to a factory, called on the worker that owns the name.
    ``weigh`` says what an item counts for in ``max_pending``, the bound of what waits to be
    committed (by default 1; a batch of rows, its rows); ``linger_s`` and ``enough`` let a
    commit wait for more (see :class:`~operators.pipelined.CommitBehind`).
    """

    def __init__(
        self,
        committers: Mapping[str, Callable[[], Committer[T]]],
        weigh: Callable[[T], int] | None = None,
        max_pending: int = MAX_PENDING,
        *,
        linger_s: float = 0.0,
        enough: int = 0,
    ) -> None:
        self._committers = dict(committers)
        self._names = sorted(self._committers)
        self._weigh = weigh
        self._max_pending = max_pending
        self._linger_s = linger_s
        self._enough = enough

    def list_parts(self) -> list[str]:
        return list(self._names)

    def part_fn(self, item_key: str) -> int:
        # Partitions are ordered by name across the cluster: route each name to its own.
        return self._names.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _CommitPartition[T]:
        return _CommitPartition(
            for_part,
            self._committers[for_part](),
            self._weigh,
            self._max_pending,
            self._linger_s,
            self._enough,
        )
