"""Chaos in CI: SIGKILLs across the stages, a broker restart and API faults while a workload
runs, then exact reconciliation of every event, file, row and result."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from claimx_flow.lab.chaos import BrokerControl, ChaosPlan, SimulatorFaults, run_chaos
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.stack import KafkaService
from tests.isolation import isolated_settings
from tests.simulator_fixtures import SIMULATOR_SEED


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerControl | None]:
    """A broker of this test's own, so restarting it disturbs no other test; with an external
    cluster (``KAFKA_BOOTSTRAP_SERVERS``), none: the stages are still killed, the broker is not.
    """
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    control = BrokerControl(KafkaService().start(tmp_path / "kafka"))
    try:
        yield control
    finally:
        stop_process_group(control.running.pid)


def test_kills_and_a_broker_restart_lose_nothing_and_double_nothing(
    own_broker: BrokerControl | None, sim: RunningSimulator, kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Topics of its own (a uuid prefix): on a shared external cluster nothing else sees them.
    settings = isolated_settings(
        own_broker.running.endpoint if own_broker else kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        create_topics=False,
        claimx_api_breaker_open_seconds=1,
        retry_delays=[1, 2, 3, 4],
        claimx_results_summary_seconds=1,
        download_concurrency=20,
    )
    restarts = 1 if own_broker else 0
    plan = ChaosPlan(
        seconds=45,
        events=300,
        projects=15,
        kill_every_s=(3, 6),
        seed=SIMULATOR_SEED,
        broker_restarts=restarts,
    )
    report = run_chaos(settings, plan, tmp_path / "logs", SimulatorFaults(sim.origin), own_broker)

    assert sum(report.kills.values()) >= 5, report.kills
    assert len(report.kills) >= 5  # across the stages, not one stage five times
    assert report.broker_restarts == restarts
    assert report.reconciliation.problems == []
    assert report.reconciliation.media > 0 and report.reconciliation.attachments > 0


def test_a_kafka_outage_past_every_timeout_stops_no_stage_and_loses_nothing(
    own_broker: BrokerControl | None, sim: RunningSimulator, tmp_path: Path
) -> None:
    """The broker is down 65 s while every stage has work in flight: longer than librdkafka's
    delivery timeout the sinks used to keep (60 s), after which a stage stopped and, started
    again, refused to start until the broker was back. Now nothing stops: the stages wait, and
    the law holds once the broker is back."""
    if own_broker is None:
        pytest.skip("needs a broker of its own to stop (an external cluster is shared)")
    settings = isolated_settings(
        own_broker.running.endpoint,
        tmp_path / "data",
        sim=sim,
        create_topics=False,
        retry_delays=[1, 2, 3, 4],
        claimx_results_summary_seconds=1,
    )
    plan = ChaosPlan(
        seconds=20,
        events=200,
        projects=10,
        waves=4,
        kills=False,
        broker_down_s=65,
        api_error_rate=0.1,  # failures routed to the tiers while the broker is away
        seed=SIMULATOR_SEED,
    )
    report = run_chaos(settings, plan, tmp_path / "logs", SimulatorFaults(sim.origin), own_broker)

    assert report.broker_restarts == 1
    assert [stop.described() for stop in report.self_stops] == []
    logs = [path.read_text(errors="replace") for path in (tmp_path / "logs").glob("*.log")]
    assert any("not yet confirmed by Kafka" in log for log in logs)  # a sink did wait
    assert report.reconciliation.problems == []
    assert report.reconciliation.media > 0 and report.reconciliation.attachments > 0
