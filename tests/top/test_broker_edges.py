"""What ``claimx top`` and ``claimx lag`` show in two broker states the configuration does not
foresee: an orphan tier (``RETRY_DELAYS`` changed; the retry stage still drains the old tier)
and a group position past a partition's end (a topic deleted and made again: the stage
publishes the positions its recovery snapshots kept). Both on a real broker, no stage running."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from typer.testing import CliRunner

from claimx_flow import catalog
from claimx_flow.cli import app
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client, await_leaders
from claimx_flow.lab.pipeline import settings_env
from tests.isolation import isolated_settings


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data")


def claimx(settings: Settings, tmp_path: Path, *args: str) -> str:
    """A ``claimx`` command's standard output, in this process, with these settings."""
    env = {**settings_env(settings), "CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}
    result = CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "400"})
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1), result.output  # 1: the stage endpoint does not answer
    return result.stdout


def top(settings: Settings, tmp_path: Path, *output: str) -> str:
    with socket.socket() as sock:  # a port nothing listens on: no stage runs here
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    flags = ["--once", "--interval", "0.2", "--timeout", "1", "-e", f"ingest=127.0.0.1:{port}"]
    return claimx(settings, tmp_path, "top", *flags, *output)


def top_stages(settings: Settings, tmp_path: Path) -> dict[str, dict[str, Any]]:
    document = json.loads(top(settings, tmp_path, "-o", "json"))
    assert document["kafka"]["error"] is None
    return {row["stage"]: row for row in document["stages"]}


def create(settings: Settings, *topics: str) -> None:
    admin = admin_client(settings)
    for future in admin.create_topics([NewTopic(t, 2, 1) for t in topics]).values():
        future.result(timeout=30)
    await_leaders(admin, list(topics))


def produce(settings: Settings, topic: str, partition: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for n in range(count):
        producer.produce(topic, value=b"held %d" % n, partition=partition)
    assert producer.flush(30) == 0


def commit(settings: Settings, stage: str, topic: str, partition: int, offset: int) -> None:
    group = settings.consumer_group(catalog.stage(stage).consumer)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        consumer.close()


def test_orphan_tiers_count_in_the_tiers_and_the_retry_stages_lag(
    settings: Settings, tmp_path: Path
) -> None:
    """Two tiers the ladders no longer name hold 3 messages; a third, empty, is not drained
    by the retry stage and so is not shown either."""
    enrichment = f"{settings.claimx_enrichment_pending_topic}.retry.7m"
    download = f"{settings.claimx_downloads_pending_topic}.retry.90s"
    empty = f"{settings.claimx_enrichment_pending_topic}.retry.3m"
    create(settings, enrichment, download, empty)
    produce(settings, enrichment, 0, 1)
    produce(settings, enrichment, 1, 1)
    produce(settings, download, 0, 1)

    stages = top_stages(settings, tmp_path)
    assert stages["enrich"]["retry_tiers"] == {
        "topics": [*settings.enrichment_retry_topics, enrichment],
        "waiting": 2,
    }
    assert stages["download"]["retry_tiers"] == {
        "topics": [*settings.download_retry_topics, download],
        "waiting": 1,
    }
    retry = stages["retry"]
    assert retry["retry_tiers"]["waiting"] == 3
    assert {enrichment, download} <= set(retry["retry_tiers"]["topics"])
    assert empty not in retry["retry_tiers"]["topics"]
    assert retry["lag"] == 3  # the retry group has released none of them

    lag = json.loads(claimx(settings, tmp_path, "lag", "--stage", "retry", "-o", "json"))
    held = {row["topic"]: 0 for row in lag["lag"]}
    for row in lag["lag"]:
        held[row["topic"]] += row["lag"]
    assert (held[enrichment], held[download], held[empty]) == (2, 1, 0)
    assert f"{enrichment} (orphan tier)" in claimx(settings, tmp_path, "lag", "--stage", "retry")


def test_a_position_past_the_end_counts_0_and_is_named(settings: Settings, tmp_path: Path) -> None:
    """The enrich group's old position 5 on an empty partition, beside a partition holding one
    message; the retry group's old position 5 on an empty tier partition."""
    pending = settings.claimx_enrichment_pending_topic
    tier = settings.enrichment_retry_topics[0]
    produce(settings, pending, 1, 1)
    commit(settings, "enrich", pending, 0, 5)
    commit(settings, "retry", tier, 0, 5)

    stages = top_stages(settings, tmp_path)
    assert stages["enrich"]["lag"] == 1  # not 1 - 5
    assert stages["enrich"]["retry_tiers"]["waiting"] == 0
    assert stages["retry"]["lag"] == 0
    assert stages["retry"]["retry_tiers"]["waiting"] == 0
    assert stages["enrich"]["committed_past_end"] == [f"{pending}[0]"]
    assert stages["retry"]["committed_past_end"] == [f"{tier}[0]"]
    assert stages["ingest"]["committed_past_end"] == []

    table = top(settings, tmp_path)
    assert f"committed past the end of {pending}[0]" in table
    assert f"committed past the end of {tier}[0]" in table
    assert "-5" not in table

    lag = json.loads(claimx(settings, tmp_path, "lag", "--stage", "enrich", "-o", "json"))
    rows = {row["partition"]: row for row in lag["lag"] if row["topic"] == pending}
    assert (rows[0]["committed"], rows[0]["end"], rows[0]["lag"]) == (5, 0, 0)
    assert (rows[0]["past_end"], rows[1]["past_end"]) == (True, False)
    assert rows[1]["lag"] == 1
    assert "0 (committed past the end)" in claimx(settings, tmp_path, "lag", "--stage", "enrich")


def test_lag_counts_from_the_first_offset_held_and_names_a_missing_input(
    settings: Settings, tmp_path: Path
) -> None:
    """The enrich group has no offset on a partition whose first 3 of 5 messages retention
    deleted: it will read 2, not 5 (a stage starts at the earliest held). An input topic
    that is not there was left out of the table, exit 0."""
    pending = settings.claimx_enrichment_pending_topic
    produce(settings, pending, 0, 5)
    admin = admin_client(settings)
    for future in admin.delete_records([TopicPartition(pending, 0, 3)]).values():
        future.result(timeout=30)

    lag = json.loads(claimx(settings, tmp_path, "lag", "--stage", "enrich", "-o", "json"))
    (row,) = [r for r in lag["lag"] if (r["topic"], r["partition"]) == (pending, 0)]
    assert (row["committed"], row["low"], row["end"], row["lag"]) == (None, 3, 5, 2)
    top_row = top_stages(settings, tmp_path)["enrich"]
    assert top_row["lag"] == 2  # top reads it alike

    for future in admin.delete_topics([pending], operation_timeout=30).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30  # the controller has answered; the broker drops it after
    while pending in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{pending} still listed 30 s after its deletion"
        time.sleep(0.1)
    env = {**settings_env(settings), "CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}
    missing = CliRunner().invoke(app, ["lag", "--stage", "enrich"], env=env)
    assert missing.exit_code == 1, missing.output
    assert "topic missing" in missing.stdout and f"missing: {pending}" in missing.stderr
    document = CliRunner().invoke(app, ["lag", "--stage", "enrich", "-o", "json"], env=env)
    assert document.exit_code == 1
    assert json.loads(document.stdout)["missing_inputs"] == [pending]
