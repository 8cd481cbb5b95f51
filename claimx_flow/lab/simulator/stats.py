"""Request counters: what tests and benchmarks read to measure API calls per event."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

API_ENDPOINTS = ("project", "media", "task_assignment", "video_collaboration")
MEDIA_DOWNLOAD = "media_download"


@dataclass
class Stats:
    """Counts per endpoint, statuses per endpoint, and how many requests were in flight at once.

    Status 0 means the connection was dropped before a complete answer (``down``,
    ``disconnect``, ``truncated``).

    Touched only on the server's event loop; other threads read plain ints and counters.
    """

    requests: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    media_in_flight: int = 0
    media_max_in_flight: int = 0
    media_bytes_served: int = 0

    @property
    def api_calls(self) -> int:
        """Requests to the four REST calls, whatever they answered."""
        return sum(self.requests[name] for name in API_ENDPOINTS)

    @contextmanager
    def track(self, endpoint: str) -> Iterator[None]:
        """Count one request and keep it in the in-flight gauge while it runs."""
        self.requests[endpoint] += 1
        media = endpoint == MEDIA_DOWNLOAD
        if media:
            self.media_in_flight += 1
            self.media_max_in_flight = max(self.media_max_in_flight, self.media_in_flight)
        else:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            if media:
                self.media_in_flight -= 1
            else:
                self.in_flight -= 1

    def record_status(self, endpoint: str, status: int) -> None:
        self.statuses.setdefault(endpoint, Counter())[status] += 1

    def record_fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def reset(self) -> None:
        """Zero the counters; requests still in flight keep their place in the gauges."""
        self.requests.clear()
        self.statuses.clear()
        self.faults.clear()
        self.max_in_flight = self.in_flight
        self.media_max_in_flight = self.media_in_flight
        self.media_bytes_served = 0

    def snapshot(self) -> dict[str, Any]:
        """The JSON form served at ``/_admin/stats``."""
        return {
            "requests": dict(self.requests),
            "api_calls": self.api_calls,
            "statuses": {
                name: {str(code): n for code, n in counts.items()}
                for name, counts in self.statuses.items()
            },
            "faults": dict(self.faults),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "media_in_flight": self.media_in_flight,
            "media_max_in_flight": self.media_max_in_flight,
            "media_bytes_served": self.media_bytes_served,
        }
