"""What the dataflows' Kafka sources report, turned into this process's metrics and liveness.

The sources (``operators/``) know nothing of either; they call these methods, which match
their observer protocols.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from claimx_flow.runtime import health, metrics


class StageObserver:
    """Counts what a stage's sources read and keeps its liveness heartbeat."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}

    def polled(self, quiet_until: datetime | None = None) -> None:
        health.heartbeat(quiet_until)

    def consumed(self, topic: str, partition: int, count: int, lag: int | None) -> None:
        consumed, lag_gauge = self._partition_series(topic, partition)
        if count:
            consumed.inc(count)
        if lag is not None:
            lag_gauge.set(lag)

    def _partition_series(self, topic: str, partition: int) -> tuple[Any, Any]:
        """The partition's counter and gauge, looked up once (this runs on every batch)."""
        series = self._series.get((topic, partition))
        if series is None:
            labels = {"stage": metrics.stage(), "topic": topic, "partition": str(partition)}
            series = (metrics.CONSUMED.labels(**labels), metrics.CONSUMER_LAG.labels(**labels))
            self._series[(topic, partition)] = series
        return series

    def snapshotted(self, topic: str, partition: int, offset: int) -> None:
        metrics.OFFSET_SNAPSHOTS.labels(stage=metrics.stage(), topic=topic).inc()

    def holding(self, topic: str, partition: int, head_due_in_s: float) -> None:
        metrics.HELD.labels(tier=topic, partition=str(partition)).set(head_due_in_s)

    def released(self, topic: str, lateness_s: float) -> None:
        metrics.RELEASE_LATENESS.labels(tier=topic).observe(lateness_s)
