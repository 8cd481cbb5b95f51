"""A real Prometheus scraping real stage processes: the key series are there with plausible
values, every dashboard query and rule runs, and readiness follows the ClaimX API.

Prometheus scrapes each stage as the PodMonitor does in Kubernetes: the target carries the
stage as ``stage`` (there, relabelled from the pod's ``claimx.io/stage``) and the labels a
stage exposes are honoured, so ``up`` has a stage and the absence and down alerts can name it."""

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

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.kafka.lag import dlq_depths, read_dlq_partitions
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import (
    LOOPBACK,
    free_port,
    start_detached,
    stop_process_group,
    wait_until,
)
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from tests.isolation import isolated_settings
from tests.ops.conftest import REPO, RULES, Prometheus, _ready, tool
from tests.simulator_fixtures import SIMULATOR_SEED

EVENTS = 200
UNREADABLE = 3
"""Events that are not JSON: the ingester sends them to the events DLQ."""
RUNNING = {"ingest", "enrich"}


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

    def metrics_text(self, stage: str) -> str:
        url = f"http://{LOOPBACK}:{self.ports[stage]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text: str = answer.read().decode()
        return text


@pytest.fixture
def stage_prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, int]], Prometheus]]:
    """``start({stage: port})``: a Prometheus scraping each stage's health port every second
    as the PodMonitor does (target label ``stage``, exposed labels honoured), evaluating the
    project's rules every second."""
    binary = tool("prometheus")
    started: list[int] = []

    def start(ports: dict[str, int]) -> Prometheus:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": f"claimx-{stage}",
                    "honor_labels": True,
                    "static_configs": [
                        {"targets": [f"{LOOPBACK}:{port}"], "labels": {"stage": stage}}
                    ],
                }
                for stage, port in ports.items()
            ],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        process = start_detached(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{port}",
            ],
            log_path=log,
            cwd=tmp_path,
        )
        started.append(process.pid)
        url = f"http://{LOOPBACK}:{port}"
        wait_until(
            lambda: _ready(url), timeout_s=30, what="prometheus", pid=process.pid, log_path=log
        )
        return Prometheus(url)

    yield start
    for pid in started:
        stop_process_group(pid, grace_s=10)


@pytest.fixture
def stages(kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path) -> Iterator[Stages]:
    """ingest and enrich as `python -m bytewax.run` processes, each on its own health port
    (a free one: the pipeline runner picks them)."""
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        claimx_api_timeout_seconds=2,
        claimx_dlq_depth_interval_seconds=1,
    )
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    try:
        pipeline.start(sorted(RUNNING))
        yield Stages(settings, pipeline)
    finally:
        pipeline.stop()


def produce(settings: Settings, lines: list[tuple[str, str]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for key, line in lines:
        producer.produce(settings.claimx_events_topic, key=key, value=line.encode())
    assert producer.flush(30) == 0


def test_prometheus_scrapes_the_stages_and_readiness_follows_the_api(
    stages: Stages,
    sim: RunningSimulator,
    stage_prometheus: Callable[[dict[str, int]], Prometheus],
) -> None:
    prom = stage_prometheus(stages.ports)
    stages.wait_for(
        lambda: len(prom.query("up == 1")) == 2, timeout_s=60, what="both stages scraped"
    )
    # Fed only once scraped, so the counters' rates see the work happen.
    plan = EventPlan(count=EVENTS, projects=8, mix="mixed", seed=SIMULATOR_SEED)
    unreadable = [(f"bad-{i}", "not json {") for i in range(UNREADABLE)]
    produce(stages.settings, list(event_lines(plan)) + unreadable)

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
        'sum(claimx_delta_source_rows_total{table="claimx_projects"})': 1,
        'sum(claimx_delta_source_rows_total{table="claimx_events"})': EVENTS,
        'sum(claimx_delta_rows_total{table="claimx_events",action="inserted"})': EVENTS,
        "sum(claimx_delta_write_duration_seconds_count)": 2,
    }
    stages.wait_for(
        lambda: all((prom.value(expr) or 0) >= least for expr, least in written.items()),
        timeout_s=20,
        what=f"Delta writes and offset snapshots in Prometheus: {list(written)}",
    )

    # Source rows are not a `claimx_delta_rows_total` action: its sum is rows changed.
    assert not prom.query('claimx_delta_rows_total{action="source"}')

    # DLQ depth: each stage exports the depth of the DLQ it writes, as Kafka counts it (the
    # unreadable events are in the events DLQ), labelled with its stage by the scrape.
    settings = stages.settings
    dlqs = [settings.claimx_events_dlq_topic, settings.claimx_enrichment_dlq_topic]

    def depths_agree() -> bool:
        kafka = dlq_depths(read_dlq_partitions(settings, dlqs))
        seen = prom.query("max by (topic) (claimx_dlq_depth)")
        scraped = {s["metric"]["topic"]: int(float(s["value"][1])) for s in seen}
        return kafka[dlqs[0]] >= UNREADABLE and scraped == kafka

    stages.wait_for(depths_agree, timeout_s=20, what="DLQ depths in Prometheus as in Kafka")
    exporters = {
        (s["metric"]["stage"], s["metric"]["topic"]) for s in prom.query("claimx_dlq_depth")
    }
    assert exporters == {("ingest", dlqs[0]), ("enrich", dlqs[1])}
    assert (prom.value(f'claimx_dlq_depth{{topic="{dlqs[0]}"}}') or 0) >= UNREADABLE

    # No `_created` series, neither in Prometheus nor on a stage's own /metrics.
    assert not prom.query('{__name__=~".+_created"}')
    for stage in RUNNING:
        samples = [line for line in stages.metrics_text(stage).splitlines() if line[:1] != "#"]
        assert samples and not [line for line in samples if "_created" in line.split(" ")[0]]

    # `up` and every series carry the target's stage; what a stage exposes as `stage` is
    # honoured (no `exported_stage`) and is the same stage.
    up = {s["metric"]["stage"]: s["value"][1] for s in prom.query('up{stage!=""}')}
    assert up == dict.fromkeys(RUNNING, "1")
    assert not prom.query('count by (job) ({job=~"claimx-.+", stage=""})')
    assert not prom.query('{exported_stage!=""}')
    assert not prom.query("claimx_stage_info unless on (job, stage) up")
    # The stages not running are absent: their alerts are on their way (5 minutes).
    absent = 'ALERTS{alertname="ClaimXStageAbsent"}'
    stages.wait_for(
        lambda: {s["metric"]["stage"] for s in prom.query(absent)} == set(STAGE_NAMES) - RUNNING,
        timeout_s=10,
        what="ClaimXStageAbsent pending for the stages not running",
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

    # A stage that stops answering: `up` 0 with its stage, and ClaimXStageDown on its way.
    stages.pipeline.kill("ingest")
    down = 'ALERTS{alertname="ClaimXStageDown",stage="ingest"}'
    deadline = time.monotonic() + 15
    while not (prom.value('up{stage="ingest"}') == 0 and prom.query(down)):
        assert time.monotonic() < deadline, f"no ClaimXStageDown for ingest: {prom.query('up')}"
        time.sleep(0.25)
    assert prom.value('up{stage="enrich"}') == 1


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
