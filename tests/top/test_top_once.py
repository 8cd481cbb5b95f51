"""``claimx top --once --output json`` against running stages: its rates and lag are the
stages' own /metrics and the consumer groups' numbers."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.kafka.lag import stage_lag
from tests.top.conftest import CLAIMX, FIRST_PROJECT, RUNNING, Watched, event, messages_in, produce

OUTPUT = {
    "ingest": "claimx_events_ingested_total",
    "enrich": "claimx_events_enriched_total",
    "download": "claimx_downloads_total",
    "upload": "claimx_uploads_total",
    "retry": "claimx_retry_release_lateness_seconds_count",
}


def own_metrics(address: str) -> tuple[dict[str, float], float | None]:
    """What the stage itself says: its input and output counters, and its lag gauges summed
    (None when the stage publishes no lag gauge)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    sums: dict[str, float] = {"consumed": 0.0, **{name: 0.0 for name in OUTPUT.values()}}
    lag: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "claimx_consumed_messages_total":
                sums["consumed"] += sample.value
            elif sample.name == "claimx_consumer_lag_messages":
                lag = (lag or 0.0) + sample.value
            elif sample.name in sums:
                sums[sample.name] += sample.value
    return sums, lag


def top_once(watched: Watched, interval: float) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [CLAIMX, "top", "--once", "--output", "json", "--interval", str(interval), *watched.flags],
        capture_output=True,
        text=True,
        env=watched.env,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_stage(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["stage"]: row for row in document["stages"]}


def test_rates_are_the_stages_own_counters_over_the_interval(watched: Watched) -> None:
    stop = threading.Event()

    def traffic() -> None:  # events keep arriving while top takes its two scrapes
        n = 0
        while not stop.is_set():
            produce(watched.settings, [event("PROJECT_CREATED", FIRST_PROJECT + n % 4)])
            n += 1
            time.sleep(0.05)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        time.sleep(1)
        before = {s: own_metrics(watched.endpoints[s])[0] for s in RUNNING}
        code, document = top_once(watched, 2.0)
        after = {s: own_metrics(watched.endpoints[s])[0] for s in RUNNING}
    finally:
        stop.set()
        feeder.join(10)
    assert code == 1  # the results endpoint does not answer
    stages = by_stage(document)
    assert list(stages) == list(STAGE_NAMES)
    for stage in RUNNING:
        (process,) = stages[stage]["processes"]
        assert process["reachable"] and process["serves"] == stage
        assert process["ready"] is True, process["not_ready"]
        window = process["window_s"]
        assert 2.0 <= window < 10
        for counter, own in (("input", "consumed"), ("output", OUTPUT[stage])):
            seen = process[counter]
            assert before[stage][own] <= seen["total"] - seen["delta"]
            assert seen["total"] <= after[stage][own]
            assert seen["rate"] == pytest.approx(seen["delta"] / window, rel=0.01)
        assert stages[stage]["input_rate"] == process["input"]["rate"]
    ingest = stages["ingest"]["processes"][0]
    assert ingest["input"]["rate"] > 1 and ingest["output"]["rate"] > 1
    assert ingest["last_progress_s"] is not None
    (results,) = stages["results"]["processes"]
    assert results["reachable"] is False and results["error"]
    assert results["endpoint"] == watched.endpoints["results"]


def settled(watched: Watched) -> bool:
    return all(sum(r.lag for r in stage_lag(watched.settings, s)) == 0 for s in RUNNING[:4])


def test_lag_tiers_and_dlqs_are_the_brokers(watched: Watched) -> None:
    watched.run.wait_for(lambda: settled(watched), 60, "the running stages caught up")
    time.sleep(2)  # a snapshot interval and more: the groups' positions are final
    groups = {s: sum(r.lag for r in stage_lag(watched.settings, s)) for s in STAGE_NAMES}
    own_lag = {s: own_metrics(watched.endpoints[s])[1] for s in RUNNING}
    _, document = top_once(watched, 0.5)
    stages = by_stage(document)
    assert {s: stages[s]["lag"] for s in STAGE_NAMES} == groups
    assert groups["results"] > 0 and groups["retry"] == 1  # nobody reads results; one held
    for stage in RUNNING:
        (process,) = stages[stage]["processes"]
        assert process["lag_reported"] == own_lag[stage]
    settings = watched.settings
    assert stages["enrich"]["retry_tiers"]["waiting"] == 1
    assert stages["enrich"]["retry_tiers"]["topics"] == settings.enrichment_retry_topics
    assert stages["retry"]["retry_tiers"]["waiting"] == 1
    assert stages["download"]["retry_tiers"]["waiting"] == 0
    dlq = settings.claimx_enrichment_dlq_topic
    assert stages["enrich"]["dlq"] == {"topic": dlq, "messages": messages_in(settings, dlq)}
    assert stages["enrich"]["dlq"]["messages"] >= 1
    assert stages["upload"]["dlq"]["messages"] == 0
    assert stages["results"]["dlq"]["topic"] is None
    assert stages["enrich"]["processes"][0]["breaker"] in ("closed", "half_open", "open")
    assert document["kafka"]["error"] is None
