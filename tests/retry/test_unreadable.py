"""A message in a retry tier that the Kafka client cannot read ends in the DLQ of its tier's
ladder, with the reason and where it was; its batch-mates go back to their pending topic; and a
SIGKILL after that neither loses nor repeats anything.

How the unreadable message is made: the broker checks every batch a producer sends (its CRC, and
for a compressed batch that it decompresses), so no client, not even librdkafka driven through
ctypes (``tests/poison/raw_producer.py``, which can only make headers unreadable), can store a
batch a consumer cannot read. What a consumer does meet is a batch damaged at rest (a disk or
filesystem fault). So a compressed batch is produced normally and then damaged where the broker
keeps it: its compressed bytes in the partition's log segment are overwritten with zeros. The
broker serves fetches from that file as stored, and librdkafka, which does not check CRCs by
default, fails to decompress it and reports ``_BAD_COMPRESSION`` at the batch's offset: a real
unreadable message on a real broker. This needs the broker's log directory on this machine (the
suite's own broker); with a remote ``KAFKA_BOOTSTRAP_SERVERS`` the test is skipped.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.topics import admin_client
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.models import FailureInfo
from tests.dlq.helpers import Read, read_all
from tests.isolation import isolated_settings

BATCH_HEADER_BYTES = 61
"""A v2 record batch's header: base offset (8), length (4), leader epoch (4), magic (1), CRC (4),
attributes (2), last offset delta (4), first and max timestamps (8 + 8), producer id (8) and
epoch (2), base sequence (4), record count (4). The records (compressed, here) follow it."""
COMPRESSION_MASK = 0x07


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", retry_delays=[3, 6, 9, 12])


@pytest.fixture
def retry_stage(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    yield pipeline
    pipeline.stop()


def partition_dir(settings: Settings, topic: str, partition: int) -> Path:
    """Where the broker keeps ``topic[partition]``, or a skip when that is not on this machine."""
    admin = admin_client(settings)
    broker = next(iter(admin.list_topics(timeout=30).brokers))
    resource = ConfigResource(ConfigResource.Type.BROKER, str(broker))
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    for log_dir in (config["log.dirs"].value or "").split(","):
        found = Path(log_dir) / f"{topic}-{partition}"
        if found.is_dir():
            return found
    pytest.skip("the broker's log directory is not on this machine: cannot damage a batch")


def damage_compressed_batches(settings: Settings, topic: str, partition: int) -> list[int]:
    """Overwrite the compressed records of every compressed batch of ``topic[partition]`` with
    zeros, in place, as a disk fault would; returns the batches' base offsets."""
    segments = sorted(partition_dir(settings, topic, partition).glob("*.log"))
    damaged = []
    for segment in segments:
        data = segment.read_bytes()
        fd = os.open(segment, os.O_WRONLY)
        try:
            at = 0
            while at + BATCH_HEADER_BYTES <= len(data):
                base, length = struct.unpack_from(">qi", data, at)
                (attributes,) = struct.unpack_from(">h", data, at + 21)
                end = at + 12 + length
                if attributes & COMPRESSION_MASK:
                    body = end - (at + BATCH_HEADER_BYTES)
                    assert os.pwrite(fd, bytes(body), at + BATCH_HEADER_BYTES) == body
                    damaged.append(base)
                at = end
        finally:
            os.close(fd)
    return damaged


def fill(settings: Settings, tier: str, goods: list[bytes], lost: int) -> None:
    """``goods[0]``, one gzip batch of ``lost`` records, then the other goods, all in partition
    0 of ``tier``, each in a batch of its own, written long enough ago to be due at once."""
    written = int((datetime.now(UTC) - timedelta(seconds=30)).timestamp() * 1000)
    plain = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    packed = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "compression.type": "gzip",
            "linger.ms": 1000,  # the lost records travel in one batch
        }
    )

    def good(value: bytes) -> None:
        plain.produce(tier, key=value, value=value, partition=0, timestamp=written)
        assert plain.flush(30) == 0

    good(goods[0])
    for index in range(lost):
        value = f'{{"lost": {index}}}'.encode() * 20
        packed.produce(tier, key=b"lost", value=value, partition=0, timestamp=written)
    assert packed.flush(30) == 0
    for value in goods[1:]:
        good(value)


def until(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f}s: {what}"
        time.sleep(0.5)


def values(settings: Settings, topic: str) -> list[bytes]:
    return sorted(read.value or b"" for read in read_all(settings.kafka_bootstrap_servers, topic))


def letters(settings: Settings, dlq: str) -> list[Read]:
    return read_all(settings.kafka_bootstrap_servers, dlq)


def assert_dead_lettered(letters: list[Read], tier: str, offsets: list[int]) -> None:
    """One DLQ copy per lost offset, each saying why and where it was."""
    found: dict[int, int] = {}
    for letter in letters:
        info = FailureInfo.maybe_from_headers(list(letter.headers.items()))
        assert info is not None, letter
        assert letter.value is None
        assert info.stage == "retry"
        assert info.error_category is ErrorCategory.PERMANENT
        assert info.error_class == "KafkaMessageError"
        assert info.error_message.startswith("unreadable by the Kafka client: ")
        assert "Decompression" in info.error_message  # librdkafka's own words
        assert (info.original_topic, info.original_partition) == (tier, 0)
        found[info.original_offset] = found.get(info.original_offset, 0) + 1
    assert found == dict.fromkeys(offsets, 1)


def test_an_unreadable_message_in_a_tier_is_dead_lettered_and_its_batch_mates_released(
    settings: Settings, retry_stage: Pipeline
) -> None:
    enrichment_tier = settings.enrichment_retry_topics[0]
    download_tier = settings.download_retry_topics[1]
    # offsets: good at 0, a lost batch at 1 (enrichment: one record; download: three, 1-3)
    fill(settings, enrichment_tier, [b"e-0", b"e-2", b"e-3"], lost=1)
    fill(settings, download_tier, [b"d-0", b"d-4", b"d-5"], lost=3)
    assert damage_compressed_batches(settings, enrichment_tier, 0) == [1]
    assert damage_compressed_batches(settings, download_tier, 0) == [1]

    enrichment_pending = settings.claimx_enrichment_pending_topic
    downloads_pending = settings.claimx_downloads_pending_topic
    enrichment_dlq = settings.claimx_enrichment_dlq_topic
    downloads_dlq = settings.claimx_downloads_dlq_topic

    def settled(marks: int = 0) -> bool:
        return (
            len(values(settings, enrichment_pending)) >= 3 + marks
            and len(values(settings, downloads_pending)) >= 3 + marks
            and len(letters(settings, enrichment_dlq)) >= 1
            and len(letters(settings, downloads_dlq)) >= 3
        )

    retry_stage.start(["retry"])
    until("the batch-mates released and the lost records dead-lettered", settled)
    assert values(settings, enrichment_pending) == [b"e-0", b"e-2", b"e-3"]
    assert values(settings, downloads_pending) == [b"d-0", b"d-4", b"d-5"]
    assert_dead_lettered(letters(settings, enrichment_dlq), enrichment_tier, [1])
    assert_dead_lettered(letters(settings, downloads_dlq), download_tier, [1, 2, 3])
    assert not retry_stage.dead(), "the retry stage stopped"

    # The positions past the lost records are in recovery: a crash re-reads none of them.
    time.sleep(4)  # a few snapshots (one a second) after they were written
    retry_stage.kill("retry")
    retry_stage.restart("retry")
    fill(settings, enrichment_tier, [b"e-mark"], lost=0)
    fill(settings, download_tier, [b"d-mark"], lost=0)
    until("the marks released after the restart", lambda: settled(marks=1))
    time.sleep(2)  # and nothing more
    assert values(settings, enrichment_pending) == [b"e-0", b"e-2", b"e-3", b"e-mark"]
    assert values(settings, downloads_pending) == [b"d-0", b"d-4", b"d-5", b"d-mark"]
    assert_dead_lettered(letters(settings, enrichment_dlq), enrichment_tier, [1])
    assert_dead_lettered(letters(settings, downloads_dlq), download_tier, [1, 2, 3])
