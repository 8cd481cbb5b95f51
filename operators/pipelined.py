"""A sink partition's commits run behind the worker, and finish by the epoch's end.

A worker that commits a batch itself (a Delta MERGE, a checked Kafka flush, releasing cache
files) reads and processes nothing meanwhile. Handing commits to one background thread lets the
worker fetch and process the next batches while one commits; what arrives meanwhile is gathered
and committed as one, so a MERGE's fixed cost (about 150 ms here) is paid once per commit, not
once per arriving batch. Guarantees are unchanged: items are committed in arrival order, one
commit at a time, and the partition's ``snapshot`` — which Bytewax calls at the end of every
epoch in which the partition was written, before that epoch's input positions count as done —
waits until everything handed over is committed and raises any failure. So an epoch is never
recovered as done before its commits are, and a failed commit still fails the step.

A commit may also linger (``linger_s``): wait, from the first item it will hold, until
``enough`` weight has gathered, the time is up, or the epoch's end asks for everything. A commit
whose fixed cost does not shrink with its size (a MERGE reads the target table whatever it
writes) then runs at most once per ``linger_s`` while items trickle in, instead of as often as
it can finish; the CPU it would have spent on more commits goes to the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
"""Weight (items, unless ``weigh`` says otherwise) gathered while a commit runs before the
worker waits for it: bounds the memory, and holds the worker back when commits fall behind."""


class CommitBehind(Generic[T]):
    """Commits ``commit(items)`` on its own thread, gathering what arrives while one runs."""

    def __init__(
        self,
        name: str,
        commit: Callable[[list[T]], None],
        max_pending: int = MAX_PENDING,
        weigh: Callable[[T], int] | None = None,
        *,
        linger_s: float = 0.0,
        enough: int = 0,
    ) -> None:
        self._name = name
        self._commit = commit
        self._max_pending = max_pending
        self._weigh = weigh
        self._linger_s = linger_s
        self._enough = min(enough, max_pending)
        self._changed = threading.Condition()
        self._pending: list[T] = []
        self._weight = 0
        self._waiting = 0  # callers of wait(): the epoch's end wants everything now
        self._committing = False
        self._failure: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"commit-{name}", daemon=True)
        self._thread.start()

    def add(self, items: list[T]) -> None:
        """Hand ``items`` over; waits only while ``max_pending`` items are already waiting."""
        weight = len(items) if self._weigh is None else sum(map(self._weigh, items))
        with self._changed:
            while self._weight >= self._max_pending and self._failure is None:
                self._changed.wait()
            self._raise_failure()
            self._pending.extend(items)
            self._weight += weight
            self._changed.notify_all()

    def wait(self) -> None:
        """Until everything handed over is committed; raises what a commit raised."""
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()
            try:
                while (self._pending or self._committing) and self._failure is None:
                    self._changed.wait()
            finally:
                self._waiting -= 1
            self._raise_failure()

    def close(self) -> None:
        """Wait for what was handed over, then stop the thread.

        A failed commit is only logged here: it was raised by ``add`` or ``wait`` already (the
        epoch's snapshot), and Bytewax calls ``close`` while unwinding from that error, where a
        second one aborts the whole process instead of failing the step.
        """
        try:
            self.wait()
        except Exception:
            log.error("%s: closed after a failed commit", self._name)
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self._thread.join()

    def _linger(self) -> None:
        """With the lock held and items pending: wait while too little has gathered, no one
        waits for the commits, and the linger time is not up."""
        until = time.monotonic() + self._linger_s
        while self._weight < self._enough and not self._waiting and not self._closed:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._changed.wait(left)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if not self._pending:
                    return
                self._linger()
                items, self._pending, self._weight = self._pending, [], 0
                self._committing = True
                self._changed.notify_all()  # room for the waiting worker
            try:
                self._commit(items)
            except BaseException as exc:  # kept for the worker, which fails the step with it
                with self._changed:
                    self._failure = exc
                    self._committing = False
                    self._changed.notify_all()
                return
            with self._changed:
                self._committing = False
                self._changed.notify_all()
