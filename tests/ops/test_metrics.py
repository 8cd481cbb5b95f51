"""The metrics the runbook names, in-process: no ``_created`` series, Delta source rows apart
from inserted/updated, download not-found by status, the DLQ depth watcher's cadence and its
behaviour while Kafka is away."""

from __future__ import annotations

import logging
import threading

import pytest
from prometheus_client import REGISTRY, generate_latest

from claimx_flow.delta.writer import WriteOutcome
from claimx_flow.runtime import metrics


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_no_created_series_are_exposed() -> None:
    metrics.delta_written(WriteOutcome("claimx_media", 3, 2, 1, 0.1))
    metrics.download_not_found(404)
    text = generate_latest(REGISTRY).decode()
    assert "claimx_delta_source_rows_total" in text
    assert not [line for line in text.splitlines() if "_created" in line]


def test_source_rows_have_their_own_counter_and_rows_total_sums_to_changes() -> None:
    before = {
        action: sample("claimx_delta_rows_total", table="claimx_tasks", action=action) or 0
        for action in ("inserted", "updated")
    }
    source_before = sample("claimx_delta_source_rows_total", table="claimx_tasks") or 0
    metrics.delta_written(WriteOutcome("claimx_tasks", 10, 4, 3, 0.2))
    assert sample("claimx_delta_source_rows_total", table="claimx_tasks") == source_before + 10
    assert sample("claimx_delta_rows_total", table="claimx_tasks", action="inserted") == (
        before["inserted"] + 4
    )
    assert sample("claimx_delta_rows_total", table="claimx_tasks", action="updated") == (
        before["updated"] + 3
    )
    assert sample("claimx_delta_rows_total", table="claimx_tasks", action="source") is None


def test_download_not_found_counts_by_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_stage", metrics.stage())  # put back afterwards
    metrics.set_stage("download")
    try:
        # Published at zero for the download stage, so rate() sees the first one.
        assert sample("claimx_download_not_found_total", status="410") is not None
        before = sample("claimx_download_not_found_total", status="410") or 0
        metrics.download_not_found(410)
        assert sample("claimx_download_not_found_total", status="410") == before + 1
    finally:
        metrics.STAGE_INFO.remove("download")


class FlakyKafka:
    """Answers depths, or raises while ``down``; counts reads; tells when read."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.depth = 0
        self.down = False
        self.reads = 0
        self.read_once = threading.Event()

    def read(self) -> dict[str, int]:
        self.reads += 1
        self.read_once.set()
        if self.down:
            raise ConnectionError("broker away")
        return {self.topic: self.depth}


def test_the_watcher_keeps_the_last_depth_while_kafka_is_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = "test.depth.dlq"
    kafka = FlakyKafka(topic)
    watcher = metrics.DlqDepthWatcher([topic], kafka.read, every_s=3600)
    kafka.depth = 7
    watcher.poll()
    assert sample("claimx_dlq_depth", topic=topic) == 7
    polled = sample("claimx_dlq_depth_last_poll_timestamp_seconds", topic=topic)
    assert polled is not None and polled > 0

    kafka.down = True
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        watcher.poll()
        watcher.poll()
    assert sample("claimx_dlq_depth", topic=topic) == 7  # last known, its timestamp ageing
    assert sample("claimx_dlq_depth_last_poll_timestamp_seconds", topic=topic) == polled
    assert len([r for r in caplog.records if "broker away" in r.getMessage()]) == 1

    kafka.down, kafka.depth = False, 2
    watcher.poll()
    assert sample("claimx_dlq_depth", topic=topic) == 2


def test_the_watcher_reads_at_once_on_its_own_thread_then_on_its_cadence() -> None:
    topic = "test.cadence.dlq"
    kafka = FlakyKafka(topic)
    kafka.depth = 4
    watcher = metrics.DlqDepthWatcher([topic], kafka.read, every_s=3600).start()
    try:
        assert kafka.read_once.wait(5)
        assert watcher._thread.daemon and watcher._thread.is_alive()
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()
    assert kafka.reads == 1  # then nothing until its next turn, an hour later
    assert sample("claimx_dlq_depth", topic=topic) == 4


def test_stages_without_a_dlq_or_with_the_poll_off_start_no_watcher() -> None:
    from claimx_flow.config import Settings

    assert metrics.watch_dlq_depth("results", Settings()) is None
    assert metrics.watch_dlq_depth("retry", Settings()) is None
    assert metrics.watch_dlq_depth("enrich", Settings(claimx_dlq_depth_interval_seconds=0)) is None
