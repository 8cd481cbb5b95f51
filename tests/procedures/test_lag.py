"""Lag you can see with standard tools: during a run the ingester's group lag is positive and
falls; after it, the admin API (what kafka-consumer-groups --describe asks) shows lag 0."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

from claimx_flow.kafka.lag import stage_lag
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from tests.isolation import isolated_settings


def test_ingester_lag_rises_falls_and_ends_at_zero(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"lg{uuid.uuid4().hex[:6]}"
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", kafka_consumer_group_prefix=prefix
    )
    produce_lines(list(event_lines(EventPlan(20_000, 200))), settings.claimx_events_topic, settings)

    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["ingest"])
    samples: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = stage_lag(settings, "ingest")
            samples.append(sum(row.lag for row in rows))
            if samples[-1] == 0 and all(row.committed is not None for row in rows):
                break
            time.sleep(0.5)
    finally:
        pipeline.stop()

    assert samples[0] > 0  # work waiting when the stage started
    assert samples[-1] == 0  # all of it done and published to the group
    assert any(later < earlier for earlier, later in itertools.pairwise(samples))
    rows = stage_lag(settings, "ingest")
    assert {row.group for row in rows} == {f"{prefix}-ingester"}
    assert sum(row.end for row in rows) == 20_000
