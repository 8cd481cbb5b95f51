"""What a start reads past: the messages whose copies an earlier run left in the stage's tiers
and DLQ since its last published snapshot, found on a real broker."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.clients import client_config, producer_config
from claimx_flow.kafka.positions import position_metadata
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import DownloadTask, UploadResult
from claimx_flow.routing.failures import ORIGINAL_KEY_SHA256_HEADER as KEY_SHA256
from claimx_flow.routing.failures import READ_AT_HEADER, FailureRouter
from claimx_flow.routing.ledger import (
    CLOCK_MARGIN_S,
    OUTCOME_MARGIN_S,
    SEEK_GAP,
    FailedResults,
    RoutedLedger,
)
from claimx_flow.stages import StageOutput
from claimx_flow.stages.download import SourcedDownload
from dataflows.download import unless_routed
from tests import kafka_damage
from tests.dlq.helpers import read_all


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
    producer: Producer,
    topic: str,
    read_at: bytes | None,
    *,
    at_ms: int | None = None,
    key: bytes | None = b"k",
    value: bytes = b"{}",
    headers: list[tuple[str, bytes]] | None = None,
    partition: int = -1,
) -> None:
    sent = [("claimx.stage", b"enrich"), *(headers or [])]
    if read_at is not None:
        sent.append((READ_AT_HEADER, read_at))
    kwargs = {"timestamp": at_ms} if at_ms is not None else {}
    producer.produce(topic, key=key, value=value, headers=sent, partition=partition, **kwargs)


def fill(producer: Producer, topic: str, partition: int, keys: list[bytes | None]) -> None:
    """The input messages copies name, one per key, from offset 0 of an empty partition."""
    for key in keys:
        producer.produce(topic, key=key, value=b"{}", partition=partition)
    assert producer.flush(30) == 0


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
    fill(producer, source, 0, [b"k"] * 15)
    fill(producer, source, 1, [b"k"] * 5)
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
    fill(producer, source, 0, [b"k"] * 50)
    copy(producer, dlq, f"0:40:{source}".encode())  # read before that snapshot, still in flight
    assert producer.flush(30) == 0
    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [dlq])
    started: list[int] = []

    async def download(item: SourcedDownload) -> list[StageOutput]:
        started.append(item[0].offset)
        return []

    task = media_task("m")
    for offset in (40, 41):
        record = KafkaRecord(source, 0, offset, None, b"m", b"{}")
        asyncio.run(unless_routed(ledger, download, (record, task)))
    assert started == [41]


def test_a_start_with_no_route_topic_reads_nothing_past_and_goes_on(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """A stage must not depend, to start, on topics it only writes to."""
    source, _, _ = topics
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 1}, time.time() - 5)
    ledger = RoutedLedger(client_config(kafka_settings), group, [source], ["absent.tier"])
    assert ledger(source, 0) == frozenset()


def media_ledger(
    settings: Settings, group: str, source: str, dlq: str, results_topic: str
) -> RoutedLedger:
    """The ledger of a download stage reading ``source``, with its DLQ and failed results."""
    return RoutedLedger(
        client_config(settings),
        group,
        [source],
        [dlq],
        dlq=dlq,
        results=FailedResults(results_topic, DownloadTask, producer_config(settings)),
    )


def media_task(media_id: str) -> DownloadTask:
    return DownloadTask(
        media_id=media_id,
        project_id="p1",
        download_url=f"http://127.0.0.1/{media_id}.jpg",
        file_name=f"{media_id}.jpg",
        file_type="jpg",
        source_event_id=f"e-{media_id}",
    )


def media_copy(producer: Producer, dlq: str, source: str, offset: int, media_id: str) -> None:
    task = media_task(media_id)
    record = KafkaRecord(source, 0, offset, None, task.kafka_key, task.to_json())
    router = FailureRouter("download", dlq)
    out = router.route(
        record,
        reason="HTTP 404: media gone",
        error_class="DownloadError",
        category=ErrorCategory.PERMANENT,
    )
    producer.produce(out.topic, key=out.key, value=out.value, headers=out.headers)


def test_a_dead_lettered_file_read_past_has_its_failed_result(
    kafka_settings: Settings, topics: tuple[str, str, str], make_topic: Callable[..., str]
) -> None:
    """A crash between the DLQ copy's confirmation and its failed result's: the start sends
    the result again, and only the missing one."""
    source, _, dlq = topics
    results_topic = make_topic(partitions=2)
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    keys = [media_task("kept").kafka_key, media_task("lost").kafka_key, b"x"]
    fill(producer, source, 0, [b"-", b"-", b"-", *keys])
    media_copy(producer, dlq, source, 3, "kept")
    media_copy(producer, dlq, source, 4, "lost")
    kept = UploadResult.failed(media_task("kept"), None, "HTTP 404: media gone")
    producer.produce(results_topic, key=kept.kafka_key, value=kept.to_json())
    producer.produce(
        dlq,
        key=b"x",
        value=b"not a task",  # names no file: never had a result
        headers=[(READ_AT_HEADER, f"0:5:{source}".encode())],
    )
    assert producer.flush(30) == 0

    ledger = media_ledger(kafka_settings, group, source, dlq, results_topic)
    assert ledger(source, 0) == {3, 4, 5}
    results = [
        UploadResult.from_json(m.value)
        for m in read_all(kafka_settings.kafka_bootstrap_servers, results_topic)
    ]
    assert sorted(r.media_id for r in results) == ["kept", "lost"]
    lost = next(r for r in results if r.media_id == "lost")
    assert lost.status == "failed" and lost.error == "HTTP 404: media gone"


def test_the_span_read_ends_past_the_newest_published_snapshot(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """After a long stop, what other stages wrote since is not the stopped run's: not read."""
    source, _, dlq = topics
    group = f"g-{source}"
    stopped = time.time() - 3600
    publish(kafka_settings, group, source, {0: 0}, stopped)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    fill(producer, source, 0, [b"k"] * 3)
    copy(producer, dlq, f"0:1:{source}".encode(), at_ms=int((stopped + 10) * 1000))
    copy(producer, dlq, f"0:2:{source}".encode())  # now: an hour after the run stopped
    assert producer.flush(30) == 0
    assert RoutedLedger(client_config(kafka_settings), group, [source], [dlq])(source, 0) == {1}


def test_outcomes_are_read_only_from_the_newest_snapshot_on(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """The cached topic holds every success: only what came after the newest snapshot (less
    its margin) can be a restart's, and only that is read, however old the oldest position.
    Its failures' topics keep the whole span."""
    source, dlq, cached = topics
    group = f"g-{source}"
    now = time.time()
    publish(kafka_settings, group, source, {0: 0}, now - 90)  # a quiet partition
    publish(kafka_settings, group, source, {1: 0}, now - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    fill(producer, source, 0, [b"k"] * 4)
    fill(producer, source, 1, [b"k"] * 4)
    early_ms = int((now - 5 - OUTCOME_MARGIN_S - 20) * 1000)  # after the oldest, before the newest
    copy(producer, cached, f"0:1:{source}".encode(), at_ms=early_ms)
    copy(producer, cached, f"1:1:{source}".encode(), at_ms=early_ms)
    copy(producer, cached, f"0:2:{source}".encode())
    copy(producer, cached, f"1:2:{source}".encode())
    copy(producer, dlq, f"0:3:{source}".encode(), at_ms=early_ms)
    assert producer.flush(30) == 0
    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [dlq], outcomes=[cached])
    assert ledger(source, 0) == {2, 3}
    assert ledger(source, 1) == {2}


def test_a_copy_is_believed_only_for_the_message_it_names(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """Anything can be written to a route topic: a copy is read past only if the message at the
    position it names is there and has its key (or, for a key cut to fit, the sha256 it gives).
    A copy naming no partition of the input (one past an int32 included) is left, and the
    others are still read past. Offsets far apart are both reached."""
    source, _, dlq = topics
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 0, 1: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    fill(producer, source, 0, [f"k{i}".encode() for i in range(6)])
    fill(producer, source, 1, [None, None, *[b"far"] * 3 * SEEK_GAP])
    long_key = b"k3"
    whole = hashlib.sha256(long_key).hexdigest().encode()
    copy(producer, dlq, f"0:1:{source}".encode(), key=b"k1")
    copy(producer, dlq, f"0:2:{source}".encode(), key=b"another message's key")
    stale = hashlib.sha256(b"a key from an earlier cut").hexdigest().encode()
    headers = [(KEY_SHA256, stale), (KEY_SHA256, whole)]  # a replayed copy's, then its own
    copy(producer, dlq, f"0:3:{source}".encode(), key=b"k", headers=headers)
    copy(producer, dlq, f"0:4:{source}".encode(), key=None)
    copy(producer, dlq, f"0:99:{source}".encode(), key=b"k5")  # past the partition's end
    copy(producer, dlq, f"1:0:{source}".encode(), key=None)  # keyless: its value decides
    copy(producer, dlq, f"1:1:{source}".encode(), key=None, value=b"another message's value")
    copy(producer, dlq, f"1:{3 * SEEK_GAP - 1}:{source}".encode(), key=b"far")
    for partition in (-1, 2, 2**31, 2**63):
        copy(producer, dlq, f"{partition}:1:{source}".encode(), key=b"k1")
    copy(producer, dlq, f"0:-1:{source}".encode(), key=b"k1")
    assert producer.flush(30) == 0

    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [dlq])
    assert ledger(source, 0) == {1, 3}
    assert ledger(source, 1) == {0, 3 * SEEK_GAP - 1}


def test_a_copy_whose_key_was_cut_to_fit_is_believed_by_the_sha256_it_gives(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """A copy too large for the DLQ keeps the head of its key and says the whole key's sha256
    (``FailureRouter._truncated``): the start compares that."""
    source, _, dlq = topics
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    key = b"k" * 5000
    fill(producer, source, 0, [key])
    router = FailureRouter("ingest", dlq, max_message_bytes=4000)
    out = router.route(
        KafkaRecord(source, 0, 0, None, key, b"v" * 3000),
        reason="too large",
        error_class="MalformedMessageError",
        category=ErrorCategory.PERMANENT,
    )
    assert out.key is not None and len(out.key) < len(key)
    producer.produce(out.topic, key=out.key, value=out.value, headers=out.headers)
    assert producer.flush(30) == 0
    assert RoutedLedger(client_config(kafka_settings), group, [source], [dlq])(source, 0) == {0}


def test_a_dead_letter_copy_under_another_key_sends_no_failed_result(
    kafka_settings: Settings, topics: tuple[str, str, str], make_topic: Callable[..., str]
) -> None:
    """A genuine copy makes its message read past; a junk DLQ copy naming the same position
    under another key, holding another file's task, does not make that file's result."""
    source, _, dlq = topics
    results_topic = make_topic(partitions=2)
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    fill(producer, source, 0, [media_task("routed").kafka_key])
    media_copy(producer, dlq, source, 0, "routed")
    other = media_task("other")
    producer.produce(
        dlq,
        key=b"not the routed task's key",
        value=other.to_json(),
        headers=[(READ_AT_HEADER, f"0:0:{source}".encode())],
    )
    assert producer.flush(30) == 0
    ledger = media_ledger(kafka_settings, group, source, dlq, results_topic)
    assert ledger(source, 0) == {0}
    results = read_all(kafka_settings.kafka_bootstrap_servers, results_topic)
    assert [UploadResult.from_json(m.value).media_id for m in results] == ["routed"]


def test_a_message_the_client_cannot_read_again_is_passed_and_those_after_it_believed(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """A damaged batch in the input (``tests/kafka_damage.py``): its messages' copies cannot be
    compared and are not believed; the start reads on past it to the copies after it."""
    source, _, dlq = topics
    group = f"g-{source}"
    kafka_damage.fill(kafka_settings, source, [b"g0", b"g4", b"g5"], lost=3)
    kafka_damage.damage_lost(kafka_settings, source, 3)
    publish(kafka_settings, group, source, {0: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    copy(producer, dlq, f"0:0:{source}".encode(), key=b"g0")
    copy(producer, dlq, f"0:2:{source}".encode(), key=b"lost")
    copy(producer, dlq, f"0:5:{source}".encode(), key=b"g5")
    assert producer.flush(30) == 0
    assert RoutedLedger(client_config(kafka_settings), group, [source], [dlq])(source, 0) == {0, 5}


def test_copies_after_a_damaged_batch_in_a_route_topic_are_still_found(
    kafka_settings: Settings, topics: tuple[str, str, str]
) -> None:
    """librdkafka fetches a batch it cannot decompress again and again: the span's read steps
    past it to the copies behind it."""
    source, _, dlq = topics
    group = f"g-{source}"
    publish(kafka_settings, group, source, {0: 0}, time.time() - 5)
    producer = Producer({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    fill(producer, source, 0, [b"k"] * 3)
    packed = Producer(
        {
            "bootstrap.servers": kafka_settings.kafka_bootstrap_servers,
            "compression.type": "gzip",
            "linger.ms": 1000,
        }
    )
    packed.list_topics(dlq, timeout=30)
    copy(producer, dlq, f"0:0:{source}".encode(), partition=0)
    assert producer.flush(30) == 0
    for _ in range(3):
        packed.produce(dlq, key=b"lost", value=b"lost" * 50, partition=0)
    assert packed.flush(30) == 0
    copy(producer, dlq, f"0:2:{source}".encode(), partition=0)
    assert producer.flush(30) == 0
    assert kafka_damage.damage_compressed_batches(kafka_settings, dlq, 0) == [1]
    ledger = RoutedLedger(client_config(kafka_settings), group, [source], [dlq])
    assert ledger(source, 0) == {0, 2}
