"""DLQ depth on a real broker: what is still in a DLQ (high minus low watermark), the same for
the stages' gauge, `claimx lag` and `claimx dlq list`; a purge takes records out, a read does
not, and the stage's reader keeps one client for all its reads."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer
from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.config import Settings
from claimx_flow.dlq.browse import survey
from claimx_flow.dlq.purge import execute_purge, plan_purge
from claimx_flow.dlq.queues import DlqName
from claimx_flow.kafka.lag import DlqDepthReader, dlq_topics, read_dlq_partitions
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.runtime import metrics
from tests.isolation import isolated_settings


def produce(settings: Settings, topic: str, count: int, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for i in range(start, start + count):
        producer.produce(topic, key=f"project-{i}".encode(), value=b"{}")
    assert producer.flush(30) == 0


def test_depth_is_what_is_left_after_purges_and_every_tool_agrees(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    events, enrichment, downloads = dlq_topics(settings)
    assert [events, enrichment, downloads] == [
        settings.claimx_events_dlq_topic,
        settings.claimx_enrichment_dlq_topic,
        settings.claimx_downloads_dlq_topic,
    ]
    assert dlq_topics(settings, ["download", "upload", "results", "retry"]) == [downloads]

    produce(settings, enrichment, 30)
    reader = DlqDepthReader(settings, [events, enrichment, downloads])
    assert reader.read() == {events: 0, enrichment: 30, downloads: 0}
    rows = read_dlq_partitions(settings, [enrichment])
    assert [row.partition for row in rows] == [0, 1]  # both partitions, keyed across them
    assert all(row.low == 0 and row.depth == row.high > 0 for row in rows)

    # A purge raises the low watermark: those records are out; new ones count.
    assert execute_purge(settings, plan_purge(settings, DlqName.ENRICHMENT)) == 30
    produce(settings, enrichment, 5, start=30)
    admin = reader._admin
    assert reader.read() == {events: 0, enrichment: 5, downloads: 0}
    assert reader._admin is admin  # one client for the process's polls
    rows = read_dlq_partitions(settings, [enrichment])
    assert sum(row.high for row in rows) == 35 and sum(row.low for row in rows) == 30

    # `claimx dlq list` counts the same.
    (listed,) = survey(settings, [DlqName.ENRICHMENT])
    assert listed.messages == 5

    # The stage's watcher exports it as claimx_dlq_depth{topic}.
    watcher = metrics.DlqDepthWatcher([enrichment], DlqDepthReader(settings, [enrichment]).read, 1)
    watcher.poll()
    assert metrics.DLQ_DEPTH.labels(topic=enrichment)._value.get() == 5

    # `claimx lag` shows a row per partition and the total, for the stages asked about.
    ran = CliRunner().invoke(
        app, ["lag", "--stage", "enrich"], env=settings_env(settings), terminal_width=200
    )
    assert ran.exit_code == 0, ran.output
    assert "dead-letter queues" in ran.output
    (total,) = [line for line in ran.output.splitlines() if enrichment in line and " all " in line]
    assert total.split("│")[-2].strip() == "5"
    assert events not in ran.output and downloads not in ran.output


def test_a_missing_dlq_topic_has_no_depth_and_says_so(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", create_topics=False)
    assert DlqDepthReader(settings, dlq_topics(settings)).read() == {}
    ran = CliRunner().invoke(
        app, ["lag", "--stage", "ingest"], env=settings_env(settings), terminal_width=200
    )
    assert ran.exit_code == 1, ran.output  # its input topic is missing too: a finding
    assert ran.output.count("topic missing") == 2  # the input's row and the DLQ's
