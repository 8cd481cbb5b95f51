"""A sink partition's commits run behind the worker, one at a time, and finish by the epoch's end.

A worker that commits a batch itself (a Delta MERGE, a checked Kafka flush, releasing cache
files) reads and processes nothing meanwhile. Handing the commit to one background thread lets
the worker fetch and process the next batch while this one commits. Guarantees are unchanged:
commits run in order, each waits for the one before it, and the partition's ``snapshot`` — which
Bytewax calls at the end of every epoch in which the partition was written, before that epoch's
input positions count as done — waits for the last one and raises its failure. So an epoch is
never recovered as done before its commits are, and a failed commit still fails the step.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class CommitBehind:
    """At most one commit in flight, on its own thread."""

    def __init__(self, name: str) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{name}")
        self._pending: Future[None] | None = None

    def submit(self, commit: Callable[[T], None], batch: T) -> None:
        """Start committing ``batch`` once the commit before it has succeeded."""
        self.wait()
        self._pending = self._thread.submit(commit, batch)

    def wait(self) -> None:
        """Until the commit in flight is done; raises what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._thread.shutdown(wait=True)
