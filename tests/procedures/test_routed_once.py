"""A message routed just before a SIGKILL is routed once: the restart reads it again (its epoch
was never published) and reads past it, because its copy is already in the DLQ
(``claimx_flow/routing/ledger.py``). Without that, the restart routed it a second time, or, once
its cause had gone, processed it too: a media file both downloaded and dead-lettered.

The stages run as the design card's bare command, on a real broker; the media host is a real
HTTP server that answers 404 for a file until the test lets it answer 200.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.lag import stage_lag
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.models import CachedDownload, DownloadTask, FailureInfo, UploadResult
from claimx_flow.routing.failures import READ_AT_HEADER, read_position
from tests.dlq.helpers import Read, read_all
from tests.isolation import isolated_settings
from tests.procedures.test_resume import produce, workload
from tests.stages.download_runs import produce as produce_tasks
from tests.stages.download_runs import wait_until

REPO = Path(__file__).resolve().parents[2]
EPOCH_S = 5
"""Long enough that the group publishes a routed message's position well after its copy is
seen: the kill always comes before it."""
CONTENT = b"\xff\xd8 a photo " * 100


def bare(stage: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``python -m bytewax.run dataflows.<stage>`` exactly, epochs from the environment."""
    env = {
        **settings_env(settings),
        "CLAIMX_HEALTH_PORT": "0",
        "BYTEWAX_SNAPSHOT_INTERVAL": str(EPOCH_S),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"dataflows.{stage}"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def caught_up(settings: Settings, stage: str) -> bool:
    return all(row.lag == 0 for row in stage_lag(settings, stage))


def published(settings: Settings, stage: str, topic: str) -> dict[int, int]:
    """The stage group's committed offset of each partition of ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": settings.consumer_group(STAGES[stage].consumer),
        }
    )
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(2)], timeout=15)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def read_at(copy: Read) -> tuple[str, int, int]:
    position = read_position(copy.headers.get(READ_AT_HEADER))
    assert position is not None, copy.headers
    return position


def assert_read_again(copies: list[Read], settings: Settings, stage: str, topic: str) -> None:
    """The test's own premise: the kill came before the group moved past the routed messages,
    so the restart reads each of them again."""
    committed = published(settings, stage, topic)
    for copy in copies:
        _, partition, offset = read_at(copy)
        assert committed[partition] <= offset, (committed, read_at(copy))


def stop(stage: subprocess.Popen[bytes]) -> None:
    stage.send_signal(signal.SIGTERM)
    stage.wait(60)


def killed_once_routed(
    stage: subprocess.Popen[bytes], settings: Settings, log: Path, poison: int
) -> subprocess.Popen[bytes]:
    """Kill ingest once its ``poison`` DLQ copies are out, start it again with the bare
    command, and check it routed none of them again; the restarted stage, to stop."""
    bootstrap, dlq = settings.kafka_bootstrap_servers, settings.claimx_events_dlq_topic
    wait_until(lambda: len(read_all(bootstrap, dlq)) >= poison, "the DLQ copies")
    stage.kill()
    stage.wait(30)
    first = read_all(bootstrap, dlq)
    assert_read_again(first, settings, "ingest", settings.claimx_events_topic)

    restarted = bare("ingest", settings, log)
    try:
        wait_until(lambda: caught_up(settings, "ingest"), "the restart to publish the end")
        copies = read_all(bootstrap, dlq)
        assert sorted(read_at(c) for c in copies) == sorted(read_at(c) for c in first)
        assert len(copies) == poison
    except BaseException:
        stop(restarted)
        raise
    return restarted


def test_a_message_dead_lettered_before_a_kill_is_dead_lettered_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    bootstrap = settings.kafka_bootstrap_servers
    good = workload(100, 21)
    produce(settings, good)
    log = tmp_path / "ingest.log"
    stage = bare("ingest", settings, log)
    try:
        wait_until(lambda: caught_up(settings, "ingest"), "the group to publish what is done")
        poison = [(f"poison-{i}", f"not an event {i}") for i in range(20)]
        produce(settings, poison)
        stage = killed_once_routed(stage, settings, log, len(poison))
        tasks = read_all(bootstrap, settings.claimx_enrichment_pending_topic)
        assert len(tasks) == len(good)
        assert "read past" in log.read_text()
    finally:
        stop(stage)


def test_a_first_run_killed_before_its_first_snapshot_is_published_routes_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A group's very first run: what it routed before a kill that came ahead of its first
    published snapshot is found by the start's own published time."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    poison = [(f"poison-{i}", f"not an event {i}") for i in range(10)]
    produce(settings, poison)
    log = tmp_path / "ingest.log"
    stage = bare("ingest", settings, log)
    try:
        stage = killed_once_routed(stage, settings, log, len(poison))
    finally:
        stop(stage)


class MediaHost:
    """A real HTTP media host: ``/ok/<id>`` always serves the file; ``/gone/<id>`` answers 404
    until ``restored``; ``/vanishing/<id>`` serves it until ``vanished``, then answers 404."""

    def __init__(self) -> None:
        self.restored = threading.Event()
        self.vanished = threading.Event()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gone = self.path.startswith("/gone/") and not host.restored.is_set()
                if gone or (self.path.startswith("/vanishing/") and host.vanished.is_set()):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(CONTENT)))
                self.end_headers()
                self.wfile.write(CONTENT)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def media_host() -> Iterator[MediaHost]:
    host = MediaHost()
    yield host
    host.close()


def tasks(host: MediaHost, kind: str, count: int) -> list[DownloadTask]:
    return [
        DownloadTask(
            media_id=f"{kind}-{i}",
            project_id=f"p{i}",
            download_url=host.url(f"{kind}/{i}.jpg"),
            file_name=f"{kind}-{i}.jpg",
            file_type="jpg",
            source_event_id=f"evt-{kind}-{i}",
        )
        for i in range(count)
    ]


def killed_after(
    settings: Settings, media_host: MediaHost, kind: str, outcome: str, outcomes: int, log: Path
) -> list[DownloadTask]:
    """Download five files, then three of ``kind``, and SIGKILL the stage once ``outcome``
    holds ``outcomes`` messages: before its group publishes the three, which the restart then
    reads again. The three tasks."""
    bootstrap = settings.kafka_bootstrap_servers
    produce_tasks(settings, tasks(media_host, "ok", 5))
    stage = bare("download", settings, log)
    try:
        wait_until(lambda: caught_up(settings, "download"), "the group to publish what is done")
        later = tasks(media_host, kind, 3)
        produce_tasks(settings, later)
        wait_until(lambda: len(read_all(bootstrap, outcome)) >= outcomes, f"{outcome} filled")
    finally:
        stage.kill()
        stage.wait(30)
    return later


def cached_media(settings: Settings) -> list[CachedDownload]:
    read = read_all(settings.kafka_bootstrap_servers, settings.claimx_downloads_cached_topic)
    return [CachedDownload.from_json(m.value or b"") for m in read]


def test_a_file_dead_lettered_before_a_kill_is_not_downloaded_after_it(
    kafka_bootstrap: str, tmp_path: Path, media_host: MediaHost, sim: RunningSimulator
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", sim=sim)
    bootstrap = settings.kafka_bootstrap_servers
    dlq, pending = settings.claimx_downloads_dlq_topic, settings.claimx_downloads_pending_topic
    log = tmp_path / "download.log"
    gone = killed_after(settings, media_host, "gone", dlq, 3, log)
    first = read_all(bootstrap, dlq)
    assert_read_again(first, settings, "download", pending)

    media_host.restored.set()  # the cause has gone: a second try would now succeed
    stage = bare("download", settings, log)
    try:
        wait_until(lambda: caught_up(settings, "download"), "the restart to publish the end")
        copies = read_all(bootstrap, dlq)
        assert sorted(read_at(c) for c in copies) == sorted(read_at(c) for c in first)
        assert {FailureInfo.from_headers(list(c.headers.items())).media_id for c in copies} == {
            t.media_id for t in gone
        }
        assert sorted(c.media_id for c in cached_media(settings)) == [f"ok-{i}" for i in range(5)]
        results = [
            UploadResult.from_json(m.value)
            for m in read_all(bootstrap, settings.claimx_downloads_results_topic)
        ]
        assert {r.media_id for r in results if r.status == "failed"} == {t.media_id for t in gone}
    finally:
        stop(stage)


def test_a_file_downloaded_before_a_kill_is_not_downloaded_again_after_it(
    kafka_bootstrap: str, tmp_path: Path, media_host: MediaHost, sim: RunningSimulator
) -> None:
    """A download's cached message is its task's whole outcome too. Run again after the kill,
    the task would meet a source that has since gone (404): a DLQ copy and a deleted cache
    file for a file the upload stage may already have stored, both uploaded and dead-lettered.
    """
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", sim=sim)
    bootstrap, pending = settings.kafka_bootstrap_servers, settings.claimx_downloads_pending_topic
    log = tmp_path / "download.log"
    cached_topic = settings.claimx_downloads_cached_topic
    vanishing = killed_after(settings, media_host, "vanishing", cached_topic, 8, log)
    assert sum(published(settings, "download", pending).values()) == 5  # read again

    media_host.vanished.set()  # the source is gone: a second try would be dead-lettered
    stage = bare("download", settings, log)
    try:
        wait_until(lambda: caught_up(settings, "download"), "the restart to publish the end")
        assert read_all(bootstrap, settings.claimx_downloads_dlq_topic) == []
        assert read_all(bootstrap, settings.claimx_downloads_results_topic) == []
        cached = cached_media(settings)
        assert sorted(c.media_id for c in cached) == sorted(
            [f"ok-{i}" for i in range(5)] + [t.media_id for t in vanishing]
        )
        for message in cached:  # each file is still there for the upload stage
            assert Path(message.local_path).read_bytes() == CONTENT
        assert "read past" in log.read_text()
    finally:
        stop(stage)


def test_a_tier_message_released_before_a_kill_is_released_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The retry stage's release is its message's whole outcome too: a restart reads past what
    the killed run released, rather than sending it to its pending topic again."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", retry_delays=[3, 6, 9, 12])
    bootstrap, tier = settings.kafka_bootstrap_servers, settings.enrichment_retry_topics[0]
    pending = settings.claimx_enrichment_pending_topic
    due_ms = int((time.time() - 30) * 1000)  # written long enough ago to be due at once

    def fill(values: list[bytes]) -> None:
        producer = Producer({"bootstrap.servers": bootstrap})
        for value in values:
            producer.produce(tier, key=value, value=value, partition=0, timestamp=due_ms)
        assert producer.flush(30) == 0

    def released() -> list[bytes]:
        return sorted(m.value or b"" for m in read_all(bootstrap, pending))

    first = [f"first-{i}".encode() for i in range(5)]
    later = [f"later-{i}".encode() for i in range(10)]
    fill(first)
    log = tmp_path / "retry.log"
    stage = bare("retry", settings, log)
    try:
        wait_until(lambda: caught_up(settings, "retry"), "the group to publish what is done")
        fill(later)
        wait_until(lambda: len(released()) >= len(first) + len(later), "the later releases")
        stage.kill()
        stage.wait(30)
        releases = read_all(bootstrap, pending)
        assert_read_again(
            [m for m in releases if (m.value or b"").startswith(b"later-")], settings, "retry", tier
        )

        stage = bare("retry", settings, log)
        wait_until(lambda: caught_up(settings, "retry"), "the restart to publish the end")
        assert released() == sorted(first + later)
        assert "read past" in log.read_text()
    finally:
        stop(stage)
