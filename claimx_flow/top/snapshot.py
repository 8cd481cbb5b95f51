"""Two scrapes and a broker view made into rows: one per stage, one per process under it.

A rate is the change of a counter between two scrapes of the same process over the time
between them; a counter that went down (the process restarted) gives no rate for that interval.
"Last progress" is how long ago a process's input or output counter last moved, as seen by
this ``top`` (it cannot know what happened before it started watching).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from claimx_flow.catalog import STAGE_NAMES, StageName
from claimx_flow.config import Settings
from claimx_flow.top.broker import BrokerView, dlq_topic, tier_topics
from claimx_flow.top.endpoints import Endpoint
from claimx_flow.top.scrape import Scrape


@dataclass(frozen=True)
class Counter:
    total: float
    delta: float | None
    rate: float | None


@dataclass(frozen=True)
class ProcessRow:
    endpoint: Endpoint
    reachable: bool
    error: str | None
    window_s: float | None
    input: Counter | None
    output: Counter | None
    failures: Counter | None
    lag_reported: float | None
    breaker: str | None
    serves: str | None
    ready: bool | None
    not_ready: tuple[str, ...]
    last_progress_s: float | None
    watched_s: float


@dataclass(frozen=True)
class StageRow:
    stage: StageName
    processes: list[ProcessRow]
    lag: int | None
    tiers: int | None
    tier_topics: list[str]
    dlq: int | None
    dlq_topic: str | None
    past_end: list[str]
    """``topic[partition]`` its group committed past the end of (counted 0 in its lag)."""

    def rate(self, which: str) -> float | None:
        rates = [
            c.rate
            for p in self.processes
            if (c := getattr(p, which)) is not None and c.rate is not None
        ]
        return sum(rates) if rates else None


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    interval_s: float
    bootstrap: str
    stages: list[StageRow]
    broker_error: str | None

    @property
    def unreachable(self) -> list[Endpoint]:
        return [p.endpoint for s in self.stages for p in s.processes if not p.reachable]


class ProgressClock:
    """When each process's counters last moved, across refreshes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self._last: dict[Endpoint, tuple[float, float]] = {}
        self._moved: dict[Endpoint, float] = {}

    def see(self, scrape: Scrape) -> None:
        if not scrape.reachable:
            return
        counts = (scrape.consumed, scrape.produced)
        previous = self._last.get(scrape.endpoint)
        if previous is not None and previous != counts:
            self._moved[scrape.endpoint] = scrape.at
        self._last[scrape.endpoint] = counts

    def since(self, endpoint: Endpoint) -> float | None:
        moved = self._moved.get(endpoint)
        return None if moved is None else max(self._clock() - moved, 0.0)

    def watched(self) -> float:
        return self._clock() - self.started


def _counter(before: float | None, after: float, window_s: float | None) -> Counter:
    if before is None or window_s is None or window_s <= 0 or after < before:
        return Counter(after, None, None)
    return Counter(after, after - before, (after - before) / window_s)


def process_row(before: Scrape | None, after: Scrape, clock: ProgressClock) -> ProcessRow:
    if not after.reachable:
        return ProcessRow(
            endpoint=after.endpoint,
            reachable=False,
            error=after.error,
            window_s=None,
            input=None,
            output=None,
            failures=None,
            lag_reported=None,
            breaker=None,
            serves=None,
            ready=None,
            not_ready=(),
            last_progress_s=clock.since(after.endpoint),
            watched_s=clock.watched(),
        )
    earlier = before if before is not None and before.reachable and before is not after else None
    window = after.at - earlier.at if earlier is not None else None
    return ProcessRow(
        endpoint=after.endpoint,
        reachable=True,
        error=None,
        window_s=window,
        input=_counter(earlier.consumed if earlier else None, after.consumed, window),
        output=_counter(earlier.produced if earlier else None, after.produced, window),
        failures=_counter(earlier.failed if earlier else None, after.failed, window),
        lag_reported=after.lag,
        breaker=after.breaker,
        serves=after.serves,
        ready=after.ready,
        not_ready=after.not_ready,
        last_progress_s=clock.since(after.endpoint),
        watched_s=clock.watched(),
    )


def combine(
    settings: Settings,
    before: dict[Endpoint, Scrape],
    after: dict[Endpoint, Scrape],
    broker: BrokerView,
    clock: ProgressClock,
    interval_s: float,
) -> Snapshot:
    stages = []
    for stage in STAGE_NAMES:
        processes = [
            process_row(before.get(e), s, clock) for e, s in after.items() if e.stage == stage
        ]
        tiers = tier_topics(settings, stage, broker.orphans)
        dlq = dlq_topic(settings, stage)
        failed = broker.error is not None
        stages.append(
            StageRow(
                stage,
                processes,
                None if failed else broker.stage_lag(stage),
                None if failed or not tiers else sum(broker.tiers.get(t, 0) for t in tiers),
                tiers,
                None if failed or dlq is None else broker.dlqs.get(dlq, 0),
                dlq,
                broker.past_end(stage),
            )
        )
    return Snapshot(
        datetime.now(UTC), interval_s, settings.kafka_bootstrap_servers, stages, broker.error
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _counter_document(counter: Counter | None) -> dict[str, Any] | None:
    if counter is None:
        return None
    return {"total": counter.total, "delta": counter.delta, "rate": counter.rate}


def document(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as one JSON-ready document, for scripts."""
    return {
        "taken_at": snapshot.taken_at.isoformat(),
        "interval_s": snapshot.interval_s,
        "kafka": {"bootstrap": snapshot.bootstrap, "error": snapshot.broker_error},
        "stages": [
            {
                "stage": row.stage,
                "input_rate": row.rate("input"),
                "output_rate": row.rate("output"),
                "lag": row.lag,
                "committed_past_end": row.past_end,
                "retry_tiers": {"topics": row.tier_topics, "waiting": row.tiers},
                "dlq": {"topic": row.dlq_topic, "messages": row.dlq},
                "processes": [
                    {
                        "endpoint": p.endpoint.address,
                        "reachable": p.reachable,
                        "error": p.error,
                        "window_s": _round(p.window_s, 3),
                        "input": _counter_document(p.input),
                        "output": _counter_document(p.output),
                        "failures": _counter_document(p.failures),
                        "lag_reported": p.lag_reported,
                        "breaker": p.breaker,
                        "serves": p.serves,
                        "ready": p.ready,
                        "not_ready": list(p.not_ready),
                        "last_progress_s": _round(p.last_progress_s, 1),
                        "watched_s": _round(p.watched_s, 1),
                    }
                    for p in row.processes
                ],
            }
            for row in snapshot.stages
        ],
    }
