"""Recovery offsets belong to one incarnation of each topic: a stage whose input topic was
deleted and recreated under the same name refuses to start (exit 2, naming the topic and the
reset), whether the offsets come from its recovery snapshots or from its consumer group, and
starts again once `claimx recovery reset` has moved them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config
from claimx_flow.kafka.topics import admin_client, await_leaders, describe_topics
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.startup.recovery import recorded_topic_ids
from claimx_flow.startup.recovery_state import check_recovery_identity, reset_positions
from tests.isolation import isolated_settings


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)


def run_ingest(settings: Settings, logs: Path) -> tuple[int, str]:
    """Run the ingest stage to the end of its topic: its exit code and its log."""
    pipeline = Pipeline(settings, settings_env(settings), logs)
    pipeline.start(["ingest"])
    (process,) = pipeline.processes["ingest"]
    code = process.wait(120)
    return code, "".join(p.read_text() for p in pipeline.logs("ingest"))


def messages(settings: Settings, topic: str) -> int:
    (state,) = describe_topics(settings, [topic])
    return state.messages


def recreate(settings: Settings, topic: str, partitions: int = 2) -> None:
    """Delete ``topic`` and create it again under the same name: offsets start at 0 again."""
    admin = admin_client(settings)
    admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
    deadline = time.monotonic() + 60
    while True:  # deletion completes in the background; creating too soon is refused
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
            break
        except KafkaException:
            assert time.monotonic() < deadline, f"{topic} could not be created again"
            time.sleep(0.5)
    await_leaders(admin, [topic])


def events(n: int, seed: int) -> list[tuple[str, str]]:
    return list(event_lines(EventPlan(n, 10, seed=seed)))


def test_a_recreated_input_topic_stops_the_stage_until_a_reset(
    settings: Settings, tmp_path: Path
) -> None:
    topic, pending = settings.claimx_events_topic, settings.claimx_enrichment_pending_topic
    produce_lines(events(100, seed=1), topic, settings)
    code, log = run_ingest(settings, tmp_path / "logs-1")
    assert code == 0, log[-2000:]
    first_id = recorded_topic_ids(settings, "ingest")[topic]

    recreate(settings, topic)
    # More messages than before: every old offset lies within the new ends, so only the
    # topic id can tell that they belong to another topic.
    produce_lines(events(160, seed=2), topic, settings)
    code, log = run_ingest(settings, tmp_path / "logs-2")
    assert code == 2, log[-2000:]
    assert f"topic {topic} is not the one the recovery state" in log
    assert "claimx recovery reset ingest --to-earliest" in log
    assert messages(settings, pending) == 100  # nothing of the new topic was skipped or read

    reset_positions(settings, "ingest", "earliest")
    assert recorded_topic_ids(settings, "ingest")[topic] != first_id
    code, log = run_ingest(settings, tmp_path / "logs-3")
    assert code == 0, log[-2000:]
    assert messages(settings, pending) == 100 + 160  # the new topic, from its beginning


def test_group_offsets_beyond_a_partition_end_stop_a_stage_without_snapshots(
    settings: Settings, tmp_path: Path
) -> None:
    """Kafka drops a deleted topic's committed offsets itself (checked here), so a group
    restarts a recreated topic from its beginning; offsets that outlive their topic otherwise
    (a group's offsets restored or copied, a truncated partition) are refused, not skipped."""
    topic, pending = settings.claimx_events_topic, settings.claimx_enrichment_pending_topic
    group = settings.consumer_group("ingester")
    produce_lines(events(120, seed=3), topic, settings)
    code, log = run_ingest(settings, tmp_path / "logs-1")
    assert code == 0, log[-2000:]
    # the group has committed the ends too; the stage stopped a moment ago (assume_stopped)
    reset_positions(settings, "ingest", "latest", assume_stopped=True)
    old_ends = committed(settings, group, topic)
    assert sum(old_ends.values()) == 120
    shutil.rmtree(settings.recovery_dir("ingest"))  # no snapshot, no record: the group decides

    recreate(settings, topic)
    assert committed(settings, group, topic) == {}  # Kafka forgot them with the topic
    produce_lines(events(10, seed=4), topic, settings)
    commit(settings, group, topic, old_ends)  # offsets that outlived their topic
    code, log = run_ingest(settings, tmp_path / "logs-2")
    assert code == 2, log[-2000:]
    assert f"consumer group {group} has committed offset" in log
    assert f"for topic {topic} partition" in log
    assert "claimx recovery reset ingest --to-earliest" in log
    assert messages(settings, pending) == 120

    reset_positions(settings, "ingest", "earliest")
    code, log = run_ingest(settings, tmp_path / "logs-3")
    assert code == 0, log[-2000:]
    assert messages(settings, pending) == 120 + 10


def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({**client_config(settings), "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({**client_config(settings), "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def test_the_check_reads_and_records_the_directory_bytewax_is_given(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod, ``BYTEWAX_RECOVERY_DIRECTORY`` (the recovery volume) is where Bytewax's
    partitions are, not ``CLAIMX_DATA_DIR/recovery/<stage>``: the check records there."""
    volume = tmp_path / "volume"
    volume.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(volume), "2"], check=True)
    monkeypatch.setenv("BYTEWAX_RECOVERY_DIRECTORY", str(volume))

    check_recovery_identity(settings, "ingest")

    assert settings.claimx_events_topic in json.loads((volume / "kafka-topic-ids").read_text())
    assert (volume / "kafka-cluster-id").exists()
    assert not (settings.recovery_dir("ingest") / "kafka-topic-ids").exists()
