"""The health server on its own: liveness from heartbeats, readiness from checks, metrics."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.lab.process import free_port
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.runtime import health, metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    return status, (json.loads(body) if path.startswith("/health") else body.decode())


def test_liveness_follows_every_workers_heartbeat() -> None:
    clock = Clock()
    state = health.HealthState(clock)
    assert state.liveness(stale_s=60)["heartbeat"].ok  # starting: within the grace
    clock.now += 61
    assert not state.liveness(stale_s=60)["heartbeat"].ok  # never polled

    state.beat()
    other = threading.Thread(target=state.beat)
    other.start()
    other.join()
    assert state.liveness(stale_s=60)["heartbeat"].ok
    clock.now += 30
    state.beat()  # this worker goes on; the other thread stopped polling
    clock.now += 31
    result = state.liveness(stale_s=60)["heartbeat"]
    assert not result.ok
    assert "2 worker(s)" in result.detail


def test_a_sleeping_source_stays_alive_until_its_wake_up() -> None:
    clock = Clock()
    state = health.HealthState(clock)
    state.beat(quiet_for_s=3600)  # a retry tier waiting for a head due in an hour
    clock.now += 3000
    assert state.liveness(stale_s=60)["heartbeat"].ok
    clock.now += 661
    assert not state.liveness(stale_s=60)["heartbeat"].ok


def test_time_spent_waiting_for_kafka_is_no_stall_and_neither_is_a_start_waiting() -> None:
    """A worker waits for Kafka's confirmations however long Kafka is away (a restart would mend
    nothing); only that time is taken off, so a stuck worker is still found, a blip excuses
    seconds, not the whole window, and Kafka merely being down excuses nothing."""
    clock = Clock()
    state = health.HealthState(clock)
    for _ in range(60):  # a start held by an outage ten minutes, checking every ten seconds
        clock.now += 10
        state.waiting_to_start()
    assert state.liveness(stale_s=60)["heartbeat"].ok
    state.beat()
    for _ in range(600):  # ten minutes waiting for confirmations, told every second
        clock.now += 1
        state.waited_on_kafka()
    live = state.liveness(stale_s=60)["heartbeat"]
    assert live.ok and "not counting 599s waiting for Kafka" in live.detail
    clock.now += 58  # confirmed; then no poll for a minute: stuck
    assert state.liveness(stale_s=60)["heartbeat"].ok
    clock.now += 2
    assert not state.liveness(stale_s=60)["heartbeat"].ok

    blip = health.HealthState(clock)
    blip.beat()
    for _ in range(20):  # a stuck worker; another waits for Kafka 2 s now and then
        clock.now += 25
        blip.waited_on_kafka()
        clock.now += 2
        blip.waited_on_kafka()
    stuck = blip.liveness(stale_s=60)["heartbeat"]
    assert not stuck.ok and "not counting 40s" in stuck.detail
    blip.record("kafka", False, "KafkaException: transport failure")  # one check: a blip
    assert not blip.liveness(stale_s=60)["heartbeat"].ok


def test_kafka_found_down_twice_in_a_row_excuses_every_worker_of_the_process() -> None:
    """In a cluster of processes, one whose sinks have nothing to confirm stops polling too
    while another's epoch waits for Kafka; the Kafka check, failing in a row, tells it. A
    refused login is no outage; a single failed check is a blip."""
    clock = Clock()
    state = health.HealthState(clock)
    state.beat()
    clock.now += 30
    state.record("kafka", False, "ConnectionError: down")
    clock.now += 5
    state.record("kafka", True, "1 broker(s)")  # a blip: nothing excused
    for _ in range(120):  # then ten minutes down, checked every five seconds
        clock.now += 5
        state.record("kafka", False, "ConnectionError: down")
    live = state.liveness(stale_s=60)["heartbeat"]
    assert live.ok and "not counting 595s" in live.detail
    state.record("kafka", True, "1 broker(s)")
    clock.now += 19
    assert state.liveness(stale_s=60)["heartbeat"].ok  # 40 s before it, 19 s since
    clock.now += 2
    assert not state.liveness(stale_s=60)["heartbeat"].ok

    refused = health.HealthState(clock)
    refused.beat()
    for _ in range(20):
        clock.now += 5
        refused.record("kafka", False, "PermissionError: authentication failed", outage=False)
    assert not refused.liveness(stale_s=60)["heartbeat"].ok


def test_readiness_reds_on_open_circuit_auth_failures_and_stale_checks() -> None:
    clock = Clock()
    state = health.HealthState(clock)
    check = health.ActiveCheck("kafka", probe=_never, every_s=5, timeout_s=2)
    ready = state.readiness([check], api=True)
    assert not ready["worker"].ok and not ready["kafka"].ok  # nothing known yet

    state.beat()
    state.record("kafka", True, "1 broker(s)")
    state.breaker("closed")
    assert all(r.ok for r in state.readiness([check], api=True).values())

    state.breaker("open")
    assert not state.readiness([check], api=True)["circuit"].ok
    state.breaker("half_open")
    state.auth_failed()
    assert not state.readiness([check], api=True)["auth"].ok
    clock.now += health.AUTH_HOLD_S + 1
    assert state.readiness([check], api=True)["auth"].ok
    assert not state.readiness([check], api=True)["kafka"].ok  # its result is now too old


def test_an_auth_failure_routed_by_a_stage_turns_readiness_red(monkeypatch: Any) -> None:
    state = health.HealthState()
    monkeypatch.setattr(health, "STATE", state)
    router = FailureRouter.for_stage(Settings(), "upload", "dlq")
    record = KafkaRecord("t", 0, 7, None, b"k", b"v", [])
    router.route(record, reason="403", error_class="E", category=ErrorCategory.PERMANENT)
    assert state.readiness([], api=False)["auth"].ok
    router.route(record, reason="401", error_class="E", category=ErrorCategory.AUTH)
    assert not state.readiness([], api=False)["auth"].ok


async def _never() -> str:
    raise ConnectionError("unreachable")


async def _fine() -> str:
    return "fine"


def test_server_answers_probes_and_metrics_without_the_dataflow() -> None:
    state = health.HealthState()
    checks = [
        health.ActiveCheck("kafka", _fine, every_s=0.2),
        health.ActiveCheck("api", _never, every_s=0.2),
    ]
    port = free_port()
    server = health.HealthServer(
        "enrich", checks, host="127.0.0.1", port=port, stale_s=60, state=state
    ).start()
    assert server.port == port
    metrics.api_call("project")  # something of ours in the registry

    status, live = get(port, "/health/live")
    assert (status, live["status"]) == (200, "ok")
    state.beat()
    state.breaker("closed")
    status, ready = _eventually(port, lambda body: "api" in body["checks"])
    assert status == 503
    assert ready["checks"]["kafka"] == {"ok": True, "detail": "fine"}
    assert ready["checks"]["api"]["detail"] == "ConnectionError: unreachable"
    assert ready["stage"] == "enrich"

    status, text = get(port, "/metrics")
    assert status == 200
    assert "claimx_api_calls_total" in text
    assert 'claimx_health_check_ok{check="api",stage="enrich"} 0.0' in text

    # A second server on the same port is refused without taking the process down.
    settings = Settings(claimx_health_port=port, claimx_health_host="127.0.0.1")
    assert health.serve("enrich", settings) is None
    assert health.serve("enrich", Settings(claimx_health_port=0)) is None


def _eventually(port: int, done: Any) -> tuple[int, Any]:
    import time

    deadline = time.monotonic() + 5
    while True:
        status, body = get(port, "/health/ready")
        if done(body) and all(c["detail"] != "not checked yet" for c in body["checks"].values()):
            return status, body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_each_stage_checks_what_it_depends_on(stage: str) -> None:
    names = [check.name for check in health.active_checks(stage, Settings())]
    expected = ["kafka"]
    expected += ["api"] if stage in ("enrich", "download") else []
    expected += ["storage"] if stage == "upload" else []
    assert names == expected
