"""What a start reads past: the messages whose copies an earlier run left in the stage's tiers
and DLQ since its last published snapshot, found on a real broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config
from claimx_flow.kafka.positions import position_metadata
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import DownloadTask
from claimx_flow.routing.failures import READ_AT_HEADER
from claimx_flow.routing.ledger import CLOCK_MARGIN_S, RoutedLedger
from claimx_flow.stages import StageOutput
from claimx_flow.stages.download import SourcedDownload
from dataflows.download import unless_routed


def publish(settings: Settings, group: str, topic: str, offsets: dict[int, int], at: float) -> None:
    """Commit ``offsets`` as a stage's source publishes them, snapshotted at ``at``."""
    consumer = Consumer({**client_config(settings), "group.id": group})
    try:
        consumer.commit(
            offsets=[
                TopicPartition(topic, p, o, metadata=position_metadata(at))
                for p, o in offsets.items()
            ],
            asynchronous=False,
        )
    finally:
        consumer.close()


def copy(
    producer: Producer, topic: str, read_at: bytes | None, *, at_ms: int | None = None
) -> None:
    headers = [("claimx.stage", b"enrich")]
    if read_at is not None:
        headers.append((READ_AT_HEADER, read_at))
    kwargs = {"timestamp": at_ms} if at_ms is not None else {}
    producer.produce(topic, key=b"k", value=b"{}", headers=headers, **kwargs)


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> tuple[str, str, str]:
    return make_topic(partitions=2), make_topic(partitions=2), make_topic(partitions=2)


def test_a_start_reads_past_what_an_earlier_run_routed_since_its_last_snapshot(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    source, tier, dlq = topics
    group = f"g-{source}"
    now = time.time()
    publish(kafka_settings, group, source, {0: 10, 1: 3}, now - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    # Made before the last published snapshot (and its margin): not this crash's, not read.
    copy(producer, dlq, f"0:13:{source}".encode(), at_ms=int((now - CLOCK_MARGIN_S - 60) * 1000))
    copy(producer, tier, f"0:12:{source}".encode())
    copy(producer, dlq, f"1:3:{source}".encode())
    copy(producer, dlq, f"0:11:{source}".encode())
    copy(producer, dlq, None)  # a row refused while its message went on: read again
    copy(producer, dlq, f"0:14:{tier}".encode())  # the retry stage's copy of a tier's message
    copy(producer, dlq, b"not a position")
    assert producer.flush(30) == 0

    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [tier, dlq])
    assert ledger(source, 0) == {11, 12}
    assert ledger(source, 1) == {3}
    assert ledger(tier, 0) == frozenset()


def test_nothing_is_read_past_before_a_snapshot_time_was_published(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """The first start of a group, or after an upgrade: positions with no time."""
    source, _, dlq = topics
    group = f"g-{source}"
    consumer = Consumer({**client_config(kafka_settings), "group.id": group})
    consumer.commit(offsets=[TopicPartition(source, 0, 5)], asynchronous=False)
    consumer.close()
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    copy(producer, dlq, f"0:7:{source}".encode())
    assert producer.flush(30) == 0
    assert RoutedLedger(client_config(kafka_settings), group, [source], [dlq])(source, 0) == set()


def test_a_scan_cut_short_reads_past_what_it_found_and_says_so(
    kafka_settings: Settings, topics: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    source, _, dlq = topics
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    copy(producer, dlq, f"0:1:{source}".encode())
    assert producer.flush(30) == 0
    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [dlq], scan_limit_s=0.0)
    with caplog.at_level(logging.WARNING, logger="claimx_flow.routing.ledger"):
        assert ledger(source, 0) == set()
    assert "may be routed again" in caplog.text


def test_a_download_in_flight_at_the_snapshot_is_not_started_again_once_routed(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """A task the download step held in its recovery state comes back without being read
    again: it is checked against the same ledger."""
    source, _, dlq = topics
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 50}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    copy(producer, dlq, f"0:40:{source}".encode())  # read before that snapshot, still in flight
    assert producer.flush(30) == 0
    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [dlq])
    started: list[int] = []

    async def download(item: SourcedDownload) -> list[StageOutput]:
        started.append(item[0].offset)
        return []

    task = DownloadTask(
        media_id="m",
        project_id="p",
        download_url="http://127.0.0.1/m.jpg",
        file_name="m.jpg",
        file_type="jpg",
        source_event_id="e",
    )
    for offset in (40, 41):
        record = KafkaRecord(source, 0, offset, None, b"m", b"{}")
        asyncio.run(unless_routed(ledger, download, (record, task)))
    assert started == [41]
