"""Turns: how many groups of tasks are enriched at once, and when a stopping stage stops starting
them.

A group's deadline must count from when it can be served, not from when its read arrived: a
process holds thousands of tasks in flight against ten API calls at a time, and against an API
that answers in half a second the later groups ran out of their deadline in the process's own
queue, unsent, and spent retries into the DLQ. A group therefore waits for a turn first (in
arrival order, a few per API call so the calls never wait for work), and its deadline starts
with the turn.

Waiting for turns has no bound of its own, so a graceful stop needs one: once the stage is
stopping, no turn is given after the *closing time* (the stop plus one group deadline), a group
given its turn before then has only until then, and the groups still waiting then are turned
away, to their retry tier. So the drain ends within one deadline of the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

STOP_POLL_S = 0.5
"""How often waiting groups look for a stop, to be turned away at its closing time."""


def never() -> float | None:
    """A process that never stops (tests, measurements)."""
    return None


class Turns:
    """At most ``size`` holders at once, served in the order they asked (on one event loop)."""

    def __init__(
        self,
        size: int,
        *,
        stopped_at: Callable[[], float | None] = never,
        closing_after_s: float = 0.0,
    ) -> None:
        """``stopped_at``: when the process was asked to stop (``time.monotonic()``), or None;
        the closing time is ``closing_after_s`` later."""
        if size < 1:
            raise ValueError("turns: size must be at least 1")
        self.size = size
        self._free = size
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._stopped_at = stopped_at
        self._closing_after_s = closing_after_s
        self._watcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def held(self) -> int:
        return self.size - self._free

    def closing_in(self) -> float | None:
        """Seconds until no turn is given any more; None while the stage is not stopping."""
        stopped_at = self._stopped_at()
        if stopped_at is None:
            return None
        return stopped_at + self._closing_after_s - time.monotonic()

    async def take(self) -> bool:
        """Wait for a turn; False (and nothing to give back) if the closing time comes first."""
        left = self.closing_in()
        if left is not None and left <= 0:
            self._turn_away()
            return False
        if self._free and not self._waiting:
            self._free -= 1
            return True
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._watch()
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.give()  # given as its waiter was cancelled: the next one has it
            else:
                self._discard(turn)
            raise

    def give(self) -> None:
        """A holder is done: its turn goes to the first group still waiting (none, past the
        closing time)."""
        left = self.closing_in()
        if left is not None and left <= 0:
            self._turn_away()
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self._free += 1

    def _discard(self, turn: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):  # already given, or turned away
            self._waiting.remove(turn)

    def _turn_away(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(False)

    def _watch(self) -> None:
        """One watcher while groups wait: it sees the stop, and turns them away at closing."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_for_stop())

    async def _watch_for_stop(self) -> None:
        while self._waiting:
            left = self.closing_in()
            if left is None:
                await asyncio.sleep(STOP_POLL_S)
            elif left > 0:
                await asyncio.sleep(left)
            else:
                self._turn_away()
