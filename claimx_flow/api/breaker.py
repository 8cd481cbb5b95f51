"""A circuit breaker for the ClaimX API (CLAIMX_DOMAIN.md §5).

When the API is down, every call would otherwise wait out its timeouts and retries; after a run
of transient failures the breaker fails calls at once instead, and after a pause lets a few
trial calls through to see whether the API is back. Only transient failures count against it: a
404 or a 401 is the API answering.

Used from one event loop (one thread), so it needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


StateHook = Callable[[BreakerState, BreakerState], None]
"""Called with ``(old, new)`` on every state change, e.g. to set a metrics gauge."""


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    """Consecutive transient failures that open the circuit."""
    open_seconds: float = 60.0
    """How long it stays open before letting trial calls through."""
    half_open_max_calls: int = 2
    """Trial calls allowed in flight at once while half-open."""
    success_threshold: int = 2
    """Successful trial calls that close it again."""


class CircuitBreaker:
    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        on_change: StateHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._on_change = on_change
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self._successes = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose pause is over reads as half-open."""
        if self._state is BreakerState.OPEN and self.retry_in() <= 0:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open circuit lets trial calls through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.open_seconds - self._clock())

    def acquire(self) -> bool:
        """May a call go out now? A granted call must end in exactly one ``record_*``."""
        state = self.state
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN:
            if self._trials >= self.policy.half_open_max_calls:
                return False
            self._trials += 1
        return True

    def record_success(self) -> None:
        """The API answered (any non-transient outcome counts)."""
        if self._state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._successes += 1
            if self._successes >= self.policy.success_threshold:
                self._move(BreakerState.CLOSED)
        else:
            self._failures = 0

    def record_failure(self) -> None:
        """A transient failure: timeout, connection error, 429 or 5xx."""
        if self._state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)
            self._move(BreakerState.OPEN)
            return
        self._failures += 1
        if self._state is BreakerState.CLOSED and self._failures >= self.policy.failure_threshold:
            self._move(BreakerState.OPEN)

    def record_abandoned(self) -> None:
        """A granted call ended without an outcome (cancelled): free its trial slot."""
        if self._state is BreakerState.HALF_OPEN:
            self._trials = max(0, self._trials - 1)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        elif new is BreakerState.HALF_OPEN:
            self._trials = 0
            self._successes = 0
        else:
            self._failures = 0
        if self._on_change is not None and old is not new:
            self._on_change(old, new)
