"""How hard the client tries: backoff, Retry-After cap, rate limit and circuit breaker numbers.

The settings carry what operators tune (timeout, retries, concurrency); these are the finer
numbers, with defaults that suit production and small values that suit tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from claimx_flow.api.breaker import BreakerPolicy
from claimx_flow.config import Settings


@dataclass(frozen=True)
class ApiPolicy:
    backoff_base_s: float = 0.5
    """First retry waits up to this long; each further retry doubles the ceiling."""
    backoff_cap_s: float = 10.0
    retry_after_cap_s: float = 30.0
    """A longer ``Retry-After`` is cut to this, so one call never holds a batch for minutes."""
    rate_limit_per_s: float | None = None
    """Token-bucket rate over all calls; None turns it off."""
    rate_limit_burst: int = 50
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    max_response_bytes: int = 64 * 1024 * 1024
    """A larger body is refused unread (a project's whole media list is a few MB)."""
    max_bytes_in_flight: int = 192 * 1024 * 1024
    """Response bytes held at once over all concurrent calls. A body that would pass it is a
    transient failure (its task retries later): concurrency times the per-response limit would
    otherwise let a few large answers take the process's memory."""
    check_project_id: str = "1"
    """The project ``check()`` asks for; a 404 for it still proves reach and credentials."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiPolicy:
        """The operator-tunable numbers from the settings, the rest as defaults."""
        return cls(
            rate_limit_per_s=settings.claimx_api_rate_limit_per_second,
            breaker=BreakerPolicy(
                failure_threshold=settings.claimx_api_breaker_failures,
                open_seconds=settings.claimx_api_breaker_open_seconds,
            ),
        )

    def retry_delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Wait before retry number ``attempt + 1``: the server's ``Retry-After`` (capped) if
        it sent one, else exponential backoff with full jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)
        return rng.uniform(0.0, ceiling)
