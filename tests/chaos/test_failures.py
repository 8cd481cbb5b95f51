"""Single failures, each proved with the real thing: a broker that stops mid-batch, a Delta
writer killed mid-commit, and SIGTERM taking the graceful path."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
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
from operators.kafka import DeliveryError, checked_records_output
from tests.isolation import isolated_settings


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerControl]:
    control = BrokerControl(KafkaService().start(tmp_path / "kafka"))
    try:
        yield control
    finally:
        stop_process_group(control.running.pid)


def _chain(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def test_a_stopped_broker_fails_the_step_and_the_message_arrives_after_restart(
    own_broker: BrokerControl, tmp_path: Path
) -> None:
    settings = Settings(kafka_bootstrap_servers=own_broker.running.endpoint)
    topic = f"delivery.{uuid.uuid4().hex[:8]}"
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    await_leaders(admin, [topic])
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    def flow() -> Dataflow:
        records = [OutboundRecord(topic, f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
        dataflow = Dataflow("delivery")
        stream = op.input("in", dataflow, TestingSource(records, batch_size=20))
        checked_records_output("out", stream, producer_config(settings), flush_timeout_s=4)
        return dataflow

    stop_process_group(own_broker.running.pid, grace_s=0.1)  # the broker goes away
    with pytest.raises(Exception) as caught:
        run_main(
            flow(), epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(recovery)
        )
    assert any(isinstance(e, DeliveryError) for e in _chain(caught.value))

    own_broker.running = KafkaService().restart(own_broker.running)
    run_main(flow(), epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(recovery))

    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "check"}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: set[bytes] = set()
    deadline = time.monotonic() + 30
    while len(values) < 20 and time.monotonic() < deadline:
        values.update(m.value() for m in consumer.consume(100, 1.0) if m.error() is None)
    consumer.close()
    assert values == {f"v{i}".encode() for i in range(20)}


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
    assert "stopping gracefully" in (tmp_path / "logs" / "ingest.log").read_text()

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
