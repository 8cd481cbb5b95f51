"""Every stage's dataflow, built by its ``build(settings)`` and run in this process on 1 and 2
workers (``bytewax.testing.cluster_main``) against a real broker, the API simulator over HTTP
and local Delta tables: each stage drains what the one before it wrote."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import cluster_main
from confluent_kafka import Producer
from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.models import DownloadTask, RawEvent
from claimx_flow.routing.tiers import DUE_HEADER, enrichment_ladder
from dataflows import download, enrich, ingest, results, retry, upload
from tests.dlq.helpers import read_all
from tests.isolation import isolated_settings
from tests.simulator_fixtures import SIMULATOR_SEED


def run(flow: Dataflow, workers: int) -> None:
    cluster_main(flow, [], 0, worker_count_per_proc=workers)


def produce(
    settings: Settings,
    topic: str,
    messages: list[tuple[bytes, bytes, list[Any]]],
    written_at: datetime | None = None,
) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    stamp = {"timestamp": int(written_at.timestamp() * 1000)} if written_at else {}
    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers, **stamp)
    assert producer.flush(30) == 0


def table(settings: Settings, name: str) -> list[dict[str, Any]]:
    return DeltaTable(str((settings.tables_dir / name).resolve())).to_pyarrow_table().to_pylist()


@pytest.mark.parametrize("workers", [1, 2])
def test_each_stage_drains_what_the_one_before_wrote(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path: Path,
    workers: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", sim=sim, claimx_stop_at_end=True
    )
    lines = list(event_lines(EventPlan(count=60, projects=4, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    produce(
        settings,
        settings.claimx_events_topic,
        [(key.encode(), line.encode(), []) for key, line in lines],
    )
    bootstrap = settings.kafka_bootstrap_servers

    run(ingest.build(settings), workers)
    assert {r["event_id"] for r in table(settings, "claimx_events")} == {e.event_id for e in events}
    assert len(read_all(bootstrap, settings.claimx_enrichment_pending_topic)) == len(events)

    run(enrich.build(settings), workers)
    assert {r["project_id"] for r in table(settings, "claimx_projects")} == {
        e.project_id for e in events
    }
    tasks = [
        DownloadTask.from_json(m.value)
        for m in read_all(bootstrap, settings.claimx_downloads_pending_topic)
    ]
    media = {e.media_id for e in events if e.event_type == "PROJECT_FILE_ADDED"}
    assert {t.media_id for t in tasks} == media

    run(download.build(settings), workers)
    assert len(read_all(bootstrap, settings.claimx_downloads_cached_topic)) == len(tasks)

    run(upload.build(settings), workers)
    assert {r["media_id"] for r in table(settings, "claimx_attachments")} == media
    assert len(read_all(bootstrap, settings.claimx_downloads_results_topic)) == len(tasks)

    with caplog.at_level(logging.INFO, logger="claimx.results"):
        run(results.build(settings), workers)
    summaries = [r.getMessage() for r in caplog.records if r.name == "claimx.results"]
    assert summaries and f"{len(media)} completed" in summaries[-1]

    # A message written to the first enrichment tier a delay ago is due: back to pending.
    tier = enrichment_ladder(settings).tiers[0]
    written = datetime.now(UTC) - timedelta(seconds=tier.delay_s + 1)
    due = (written + timedelta(seconds=tier.delay_s)).isoformat().encode()
    produce(settings, tier.topic, [(b"p1", b"retried", [(DUE_HEADER, due)])], written)
    waiting = len(read_all(bootstrap, settings.claimx_enrichment_pending_topic))
    run(retry.build(settings), workers)
    pending = read_all(bootstrap, settings.claimx_enrichment_pending_topic)
    assert len(pending) == waiting + 1 and any(m.value == b"retried" for m in pending)
