"""A real Prometheus scraping real stage processes: the key series are there with plausible
values, every dashboard query and rule runs, and readiness follows the ClaimX API."""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import LOOPBACK
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from tests.isolation import isolated_settings
from tests.ops.conftest import REPO, RULES, Prometheus
from tests.simulator_fixtures import SIMULATOR_SEED

EVENTS = 200


@dataclass
class Stages:
    settings: Settings
    pipeline: Pipeline

    @property
    def ports(self) -> dict[str, int]:
        return {stage: ports[0] for stage, ports in self.pipeline.health_ports.items()}

    def health(self, stage: str, probe: str) -> tuple[int, dict[str, Any]]:
        url = f"http://{LOOPBACK}:{self.ports[stage]}/health/{probe}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            dead = self.pipeline.dead()
            assert not dead, f"stages died: {dead}\n{self.logs()}"
            if condition():
                return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def logs(self) -> str:
        logs = self.pipeline.log_dir.glob("*")
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)


@pytest.fixture
def stages(kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path) -> Iterator[Stages]:
    """ingest and enrich as `python -m bytewax.run` processes, each on its own health port
    (a free one: the pipeline runner picks them)."""
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", sim=sim, claimx_api_timeout_seconds=2
    )
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    try:
        pipeline.start(["ingest", "enrich"])
        yield Stages(settings, pipeline)
    finally:
        pipeline.stop()


def produce(settings: Settings, lines: list[tuple[str, str]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for key, line in lines:
        producer.produce(settings.claimx_events_topic, key=key, value=line.encode())
    assert producer.flush(30) == 0


def test_prometheus_scrapes_the_stages_and_readiness_follows_the_api(
    stages: Stages, sim: RunningSimulator, prometheus: Callable[[dict[str, str]], Prometheus]
) -> None:
    prom = prometheus({f"claimx-{s}": f"{LOOPBACK}:{p}" for s, p in stages.ports.items()})
    stages.wait_for(
        lambda: len(prom.query("up == 1")) == 2, timeout_s=60, what="both stages scraped"
    )
    # Fed only once scraped, so the counters' rates see the work happen.
    plan = EventPlan(count=EVENTS, projects=8, mix="mixed", seed=SIMULATOR_SEED)
    produce(stages.settings, list(event_lines(plan)))

    # Every event ingested and every task enriched or routed, as Prometheus sees it.
    tasks = 'sum(claimx_events_enriched_total) + sum(claimx_errors_total{stage="enrich"})'
    stages.wait_for(
        lambda: (
            prom.value("sum(claimx_events_ingested_total)") == EVENTS
            and prom.value(tasks) == EVENTS
        ),
        timeout_s=120,
        what=f"{EVENTS} events ingested and enriched in Prometheus",
    )
    assert prom.value('sum(claimx_events_enriched_total{event_type="PROJECT_FILE_ADDED"})')

    # API latency by endpoint and status; calls batched by project (well under one per event).
    ok_calls = prom.value(
        'sum(claimx_api_request_duration_seconds_count{stage="enrich",status="200"})'
    )
    assert ok_calls is not None and ok_calls > 0
    endpoints = {s["metric"]["endpoint"] for s in prom.query("claimx_api_calls_total")}
    assert {"project", "media"} <= endpoints
    mean = prom.value(
        "sum(claimx_api_request_duration_seconds_sum) "
        "/ sum(claimx_api_request_duration_seconds_count)"
    )
    assert mean is not None and 0 < mean < 2.5  # seconds, under the 2 s timeout (+ slack)
    # The batching ratio settles once both counters' windows hold the whole run.
    stages.wait_for(
        lambda: 0 < (prom.value("claimx:api_calls_per_event:ratio_rate5m") or 0) < 1,
        timeout_s=20,
        what="a batching ratio under one API call per event",
    )
    assert (prom.value('sum(claimx_batch_size_count{stage="enrich"})') or 0) >= 1

    # Breaker closed, lag per topic partition drained, offsets snapshotted, Delta rows merged.
    assert prom.value('claimx_api_circuit_breaker_state{stage="enrich",state="closed"}') == 1
    pending = stages.settings.claimx_enrichment_pending_topic
    stages.wait_for(
        lambda: prom.value(f'max(claimx_consumer_lag_messages{{topic="{pending}"}})') == 0,
        timeout_s=15,
        what="the enrichment lag to drain",
    )
    partitions = prom.query(f'claimx_consumer_lag_messages{{stage="enrich",topic="{pending}"}}')
    assert sorted(s["metric"]["partition"] for s in partitions) == ["0", "1"]
    # Delta writes land in the sinks at the end of an epoch, a little after the counts above.
    written = {
        'sum(claimx_offset_snapshots_total{stage="enrich"})': 1,
        'sum(claimx_delta_rows_total{table="claimx_projects",action="source"})': 1,
        'sum(claimx_delta_rows_total{table="claimx_events",action="source"})': EVENTS,
        "sum(claimx_delta_write_duration_seconds_count)": 2,
    }
    stages.wait_for(
        lambda: all((prom.value(expr) or 0) >= least for expr, least in written.items()),
        timeout_s=20,
        what=f"Delta writes and offset snapshots in Prometheus: {list(written)}",
    )

    # Every dashboard query and every rule expression is valid PromQL over these series.
    for expr in dashboard_queries() + rule_expressions():
        prom.query(expr)

    # The probes on the same ports.
    for stage in ("ingest", "enrich"):
        assert stages.health(stage, "live")[0] == 200
        status, ready = stages.health(stage, "ready")
        assert status == 200, ready
    _, ready = stages.health("enrich", "ready")
    assert set(ready["checks"]) == {"worker", "kafka", "api", "circuit", "auth"}
    _, ready = stages.health("ingest", "ready")
    assert set(ready["checks"]) == {"worker", "kafka", "auth"}

    # The API goes down: readiness turns red within seconds, and green again when it returns.
    sim.set_faults(down=True)
    took = stages.wait_for(
        lambda: stages.health("enrich", "ready")[0] == 503, timeout_s=10, what="red readiness"
    )
    assert took < 5
    _, ready = stages.health("enrich", "ready")
    assert not ready["checks"]["api"]["ok"] and ready["checks"]["kafka"]["ok"]
    assert stages.health("enrich", "live")[0] == 200  # down API: not ready, still alive
    assert stages.health("ingest", "ready")[0] == 200  # ingest does not call the API
    stages.wait_for(
        lambda: prom.value('claimx_health_check_ok{stage="enrich",check="api"}') == 0,
        timeout_s=10,
        what="the failing check in Prometheus",
    )
    sim.set_faults(down=False)
    took = stages.wait_for(
        lambda: stages.health("enrich", "ready")[0] == 200, timeout_s=10, what="green readiness"
    )
    assert took < 5


def dashboard_queries() -> list[str]:
    spec = importlib.util.spec_from_file_location("render", REPO / "monitoring/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queries: list[str] = module.dashboard_queries()
    return queries


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]
