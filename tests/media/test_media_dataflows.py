"""The download and upload dataflows against a real broker, the simulator over HTTP and the
local store: a media link that is no URL dead-letters its task instead of failing the batch
(and, on every restart, failing it again), and the attempts counted before the download carry
through the upload to the DLQ."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from bytewax.testing import cluster_main
from confluent_kafka import Consumer, TopicPartition

from claimx_flow.api import ClaimXApiClient
from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.clients import consumer_config, settled
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.media.cache_runs import cached_files
from claimx_flow.models import CachedDownload, DownloadTask, FailureInfo, MessageOrigin
from dataflows import download, upload
from tests.dataflows.test_inprocess import produce, table
from tests.dlq.helpers import read_all
from tests.isolation import isolated_settings

PROJECT = 4711


def simulator_task(settings: Settings) -> DownloadTask:
    async def first() -> dict[str, object]:
        async with ClaimXApiClient(settings) as client:
            return (await client.get_media(str(PROJECT)))[0]

    item = asyncio.run(first())
    return DownloadTask(
        media_id=str(item["mediaID"]),
        project_id=str(PROJECT),
        download_url=str(item["fullDownloadLink"]),
        file_name=str(item["mediaName"]),
        file_type=str(item["mediaType"]),
        source_event_id="evt-1",
    )


def settle_groups(settings: Settings) -> None:
    """Ask for the stages' committed offsets until their group coordinator answers. The stage
    input asks once at start (operators/kafka.py ``Progress.start``) and a busy test broker
    sometimes answers NOT_COORDINATOR then, which fails the dataflow before it reads."""
    for stage, topic in (
        ("download", settings.claimx_downloads_pending_topic),
        ("upload", settings.claimx_downloads_cached_topic),
    ):
        group = settings.consumer_group(STAGES[stage].consumer)
        consumer = Consumer(consumer_config(settings, group))
        partitions = [TopicPartition(topic, 0)]
        try:
            settled(
                partial(consumer.committed, partitions, timeout=10),
                what=f"read the {stage} group's offsets",
                timeout_s=30,
            )
        finally:
            consumer.close()


def test_a_malformed_link_is_dead_lettered_and_the_last_attempt_ends_in_the_dlq(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "data", sim=sim, claimx_stop_at_end=True
    )
    good = simulator_task(settings)
    last_try = FailureInfo.from_reason(
        "HTTP 503 from media host",
        error_class="DownloadError",
        origin=MessageOrigin(settings.claimx_downloads_pending_topic, 0, 0),
        stage="download",
        category=ErrorCategory.TRANSIENT,
    ).model_copy(update={"attempt": settings.max_retries})
    bad = {
        url: good.model_copy(update={"media_id": f"{900 + i}", "download_url": url})
        for i, url in enumerate(["http://[::1/x", "http://127.0.0.1:99999/a.jpg"])
    }
    produce(
        settings,
        settings.claimx_downloads_pending_topic,
        [
            *[(t.kafka_key, t.to_json(), []) for t in bad.values()],
            (good.kafka_key, good.to_json(), last_try.to_headers()),
        ],
    )
    bootstrap = settings.kafka_bootstrap_servers
    settle_groups(settings)

    cluster_main(download.build(settings), [], 0, worker_count_per_proc=1)

    dead = {
        DownloadTask.from_json(m.value).download_url: m
        for m in read_all(bootstrap, settings.claimx_downloads_dlq_topic)
    }
    assert sorted(dead) == sorted(bad)
    for url, reason in {
        "http://[::1/x": "malformed URL (Invalid IPv6 URL)",
        "http://127.0.0.1:99999/a.jpg": "malformed URL (Port out of range 0-65535)",
    }.items():
        info = FailureInfo.from_headers(dead[url].headers.items())
        assert (info.error_category, info.error_message) == ("permanent", reason)
    (cached_message,) = read_all(bootstrap, settings.claimx_downloads_cached_topic)
    assert FailureInfo.from_headers(cached_message.headers.items()).attempt == settings.max_retries

    cached = CachedDownload.from_json(cached_message.value)
    Path(cached.local_path).write_bytes(b"damaged in the cache")
    cluster_main(upload.build(settings), [], 0, worker_count_per_proc=1)

    dead_after_upload = read_all(bootstrap, settings.claimx_downloads_dlq_topic)
    assert len(dead_after_upload) == len(bad) + 1
    info = next(
        FailureInfo.from_headers(m.headers.items())
        for m in dead_after_upload
        if DownloadTask.from_json(m.value).media_id == good.media_id
    )
    assert (info.stage, info.attempt) == ("upload", settings.max_retries + 1)
    assert cached_files(settings.effective_cache_dir) == []  # released with its DLQ record
    attachments = settings.tables_dir / "claimx_attachments"
    assert not attachments.exists() or table(settings, "claimx_attachments") == []
