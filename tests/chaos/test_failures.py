"""Single failures, each proved with the real thing: a broker that stops mid-batch, a Delta
writer killed mid-commit, and SIGTERM taking the graceful path."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import producer_config
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.kafka.topics import admin_client, await_leaders, describe_topics
from claimx_flow.lab.chaos import BrokerControl
from claimx_flow.lab.inventory import table_rows
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.lab.stack import KafkaService
from claimx_flow.startup.recovery import kafka_cluster_id
from operators import kafka as kafka_operators
from operators import shutdown
from operators.kafka import checked_records_output
from tests.isolation import isolated_settings
from tests.probes import log_text, status, status_or_none


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerControl]:
    control = BrokerControl(KafkaService().start(tmp_path / "kafka"))
    try:
        yield control
    finally:
        stop_process_group(control.running.pid)


def _chain(error: BaseException | None) -> list[BaseException]:
    """The exception and its causes: Bytewax wraps what a step raised."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def test_a_stopped_broker_holds_the_step_until_it_is_back_and_each_message_lands_once(
    own_broker: BrokerControl,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker away for longer than any delivery timeout stops nothing: the step waits, says
    so, and delivers when the broker is back. A stage that stopped would only be started again
    into the same outage."""
    monkeypatch.setattr(kafka_operators, "WAIT_NOTE_EVERY_S", 2.0)
    settings = Settings(kafka_bootstrap_servers=own_broker.running.endpoint)
    topic = f"delivery.{uuid.uuid4().hex[:8]}"
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    await_leaders(admin, [topic])
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    records = [OutboundRecord(topic, f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    dataflow = Dataflow("delivery")
    stream = op.input("in", dataflow, TestingSource(records, batch_size=20))
    # A timeout the caller asks for is overridden: with it, librdkafka would fail them in 2 s.
    config = producer_config(settings, **{"delivery.timeout.ms": 2000})
    checked_records_output("out", stream, config)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            run_main(
                dataflow,
                epoch_interval=timedelta(seconds=1),
                recovery_config=RecoveryConfig(recovery),
            )
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    own_broker.kill()  # the broker goes away before anything is confirmed
    runner = threading.Thread(target=run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="operators.kafka"):
        runner.start()
        runner.join(6)  # three times the 2 s librdkafka would have given them
        assert runner.is_alive() and not failures  # waiting, not failed
        own_broker.start_again()
        runner.join(60)
    assert not runner.is_alive() and not failures
    waiting = [r.getMessage() for r in caplog.records if "not yet confirmed" in r.getMessage()]
    assert waiting and "20 messages not yet confirmed" in waiting[0]
    assert any("Kafka took them after" in r.getMessage() for r in caplog.records)

    # A stop during an outage gives up on what Kafka has not confirmed (the epoch replays on
    # the next start) rather than hold the drain until the pod is killed.
    own_broker.kill()
    stopped = Dataflow("delivery-stopped")
    late = [OutboundRecord(topic, b"late", b"late")]
    checked_records_output("out", op.input("in", stopped, TestingSource(late)), config)
    monkeypatch.setattr(shutdown, "_requested_at", time.monotonic())
    monkeypatch.setattr(kafka_operators, "STOPPING_GIVE_UP_S", 3.0)
    began = time.monotonic()
    with pytest.raises(Exception) as caught:  # Bytewax wraps what the step raised
        run_main(stopped, epoch_interval=timedelta(seconds=1))
    assert any("after the stop was asked for" in str(e) for e in _chain(caught.value))
    assert time.monotonic() - began < 15
    own_broker.start_again()

    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "check"}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 20 and time.monotonic() < deadline:
        values.extend(m.value() for m in consumer.consume(100, 1.0) if m.error() is None)
    values.extend(m.value() for m in consumer.consume(100, 2.0) if m.error() is None)
    consumer.close()
    values = [value for value in values if value != b"late"]  # its producer outlived the stop
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(20))  # each once


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, date, datetime
    from claimx_flow.delta.writer import DeltaWriter
    from claimx_flow.delta.tables import EVENTS

    writer = DeltaWriter(EVENTS, sys.argv[1])
    at = datetime(2026, 11, 27, tzinfo=UTC)
    for batch in range(6):
        rows = [
            {"event_id": f"e{batch}-{i}", "event_type": "PROJECT_CREATED", "project_id": str(i),
             "ingested_at": at, "created_at": at, "event_date": date(2026, 11, 27)}
            for i in range(20_000)
        ]
        writer.write(rows)
        print(f"batch {batch} committed", flush=True)
    """
)


def test_a_delta_commit_killed_mid_write_leaves_a_readable_table_and_rows_once(
    tmp_path: Path,
) -> None:
    table = tmp_path / "claimx_events"
    rng = random.Random(11)
    for _ in range(3):  # killed at a random moment, then replayed from the start
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(table)])
        time.sleep(rng.uniform(1.0, 3.0))
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        if (table / "_delta_log").exists():
            rows = DeltaTable(str(table)).to_pyarrow_table(columns=["event_id"]).num_rows
            assert rows % 20_000 == 0  # only whole, committed batches are visible
    finished = subprocess.run([sys.executable, "-c", WRITER, str(table)], timeout=300)
    assert finished.returncode == 0
    ids = DeltaTable(str(table)).to_pyarrow_table(columns=["event_id"]).column("event_id")
    assert len(ids) == len(set(ids.to_pylist())) == 6 * 20_000


def test_sigterm_takes_the_graceful_path(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_topic_partitions=1)
    lines = list(event_lines(EventPlan(count=200, projects=5, mix="mixed")))
    produce_lines(lines[:100], settings.claimx_events_topic, settings)
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["ingest"])
    (process,) = pipeline.processes["ingest"]
    deadline = time.monotonic() + 30
    while table_rows(settings, "claimx_events") < 100 and time.monotonic() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert "stopping gracefully" in log_text(tmp_path / "logs" / "ingest.log")

    # Started again, it goes on from where it stopped: counted on its output topic, where a
    # re-read would show (the events table is insert-if-absent and would hide it).
    produce_lines(lines[100:], settings.claimx_events_topic, settings)
    pipeline.start(["ingest"])
    deadline = time.monotonic() + 30
    while tasks(settings) < 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # anything read twice would be written by now
    pipeline.stop()
    assert tasks(settings) == 200
    assert table_rows(settings, "claimx_events") == 200


def tasks(settings: Settings) -> int:
    """Messages on the enrichment pending topic (what ingest writes once per event)."""
    (state,) = describe_topics(settings, [settings.claimx_enrichment_pending_topic])
    return state.messages


def test_a_stage_started_while_kafka_is_down_waits_for_it_then_works(
    own_broker: BrokerControl, tmp_path: Path
) -> None:
    """A pod started (or restarted) during a Kafka outage waits, alive and not ready, instead
    of exiting into a crash loop whose back-off would outlast the outage; once the broker is
    back it starts and reads on. SIGTERM ends such a wait at once."""
    settings = isolated_settings(
        own_broker.running.endpoint,
        tmp_path / "data",
        claimx_topic_partitions=1,
        claimx_liveness_stale_seconds=6,  # the wait below outlasts it
    )
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.cluster_id = kafka_cluster_id(settings)  # a first start, while the broker was up
    own_broker.kill()
    started = time.monotonic()
    pipeline.start(["ingest", "retry"])
    ingest, retry = pipeline.processes["ingest"][0], pipeline.processes["retry"][0]
    live_port, retry_port = pipeline.health_ports["ingest"][0], pipeline.health_ports["retry"][0]
    logs = tmp_path / "logs" / "ingest.log", tmp_path / "logs" / "retry.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
        "checking again every" in log_text(path) for path in logs
    ):
        time.sleep(0.5)
    time.sleep(max(0.0, started + 10 - time.monotonic()))  # past liveness's 6 s
    assert ingest.poll() is None and retry.poll() is None  # waiting, not exited
    assert status(live_port, "/health/live") == 200
    assert status(live_port, "/health/ready") == 503
    log = logs[0]
    assert "unreachable" in log_text(log) and log_text(log).count("checking again every") == 1

    retry.send_signal(signal.SIGTERM)  # a stop during the wait: at once, and clean
    assert retry.wait(15) == 0
    assert status_or_none(retry_port, "/health/live") is None

    own_broker.start_again()
    lines = list(event_lines(EventPlan(count=50, projects=5, mix="mixed")))
    produce_lines(lines, settings.claimx_events_topic, settings)
    deadline = time.monotonic() + 90
    while table_rows(settings, "claimx_events") < 50 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert table_rows(settings, "claimx_events") == 50
    assert ingest.poll() is None
    pipeline.stop()


def test_a_hung_broker_is_an_admin_timeout_not_a_bare_one(
    own_broker: BrokerControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster that answered metadata and then no more (SIGSTOP: a broker hung, a controller
    missing) made ``claimx check``, ``topics list`` and ``create`` print ``TimeoutError:``
    with nothing after it, and a stage's retention check fail as a misconfiguration. Now each
    names the request it waited for, and the check counts it an outage."""
    from claimx_flow.errors import KafkaAdminTimeout
    from claimx_flow.kafka import topics
    from claimx_flow.routing.tiers import all_tiers
    from claimx_flow.startup.preflight import _tier_retention

    settings = Settings(kafka_bootstrap_servers=own_broker.running.endpoint)
    admin = admin_client(settings)
    tier = all_tiers(settings)[0]
    topics.ensure_topics(admin, topics.pipeline_topics(settings, partitions=1)[:1])
    monkeypatch.setattr(topics, "ADMIN_TIMEOUT_S", 2.0)
    os.killpg(own_broker.running.pid, signal.SIGSTOP)
    try:
        with pytest.raises(KafkaAdminTimeout, match="did not answer reading the retention of"):
            topics.topic_retention(admin, [tier.topic])
        check = _tier_retention(settings, [tier])
        assert (check.ok, check.unreachable) == (False, True)
        assert "did not answer" in check.detail
    finally:
        os.killpg(own_broker.running.pid, signal.SIGCONT)
