"""One committer per partition name, across the whole cluster, committing behind the worker.

Some writes must have a single writer: concurrent writers on one Delta table fight over
commits, and the last steps of an upload must run in order. Making each such name a partition
of a ``FixedPartitionedSink`` gives it exactly one writer in the cluster. Each partition hands
its batches to a :class:`~operators.pipelined.CommitBehind`, so the worker goes on while a
commit runs, and the partition's snapshot waits for the commits, so an epoch never counts as
done before its items are committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from operators.pipelined import CommitBehind

T = TypeVar("T")


class Committer(Protocol[T]):
    """Makes a batch durable; idempotent, because a replay after a crash commits it again."""

    def commit(self, items: list[T]) -> None: ...

    def close(self) -> None: ...


class _CommitPartition(StatefulSinkPartition[T, None], Generic[T]):
    def __init__(self, name: str, committer: Committer[T]) -> None:
        self._committer = committer
        self._behind: CommitBehind[T] = CommitBehind(name, committer.commit)

    def write_batch(self, values: list[T]) -> None:
        self._behind.add(values)

    def snapshot(self) -> None:
        self._behind.wait()

    def close(self) -> None:
        try:
            self._behind.close()
        finally:
            self._committer.close()


class CommitSink(FixedPartitionedSink[T, None]):
    """Takes ``(name, item)`` pairs; each name's items go to its one committer.

    ``committers`` maps each name to a factory, called on the worker that owns the name.
    """

    def __init__(self, committers: Mapping[str, Callable[[], Committer[T]]]) -> None:
        self._committers = dict(committers)
        self._names = sorted(self._committers)

    def list_parts(self) -> list[str]:
        return list(self._names)

    def part_fn(self, item_key: str) -> int:
        # Partitions are ordered by name across the cluster: route each name to its own.
        return self._names.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _CommitPartition[T]:
        return _CommitPartition(for_part, self._committers[for_part]())
