"""A record batch damaged where the broker keeps it, as a disk fault would: what a consumer
meets as a message it cannot read.

The broker checks every batch a producer sends (its CRC, and for a compressed batch that it
decompresses), so no client can store a batch a consumer cannot read. So a compressed batch is
produced normally and then damaged in the partition's log segment: its compressed bytes are
overwritten with zeros. The broker serves fetches from that file as stored, and librdkafka, which
does not check CRCs by default, fails to decompress it and reports ``_BAD_COMPRESSION`` at the
batch's offset. This needs the broker's log directory on this machine (the suite's own broker);
with a remote ``KAFKA_BOOTSTRAP_SERVERS`` the caller is skipped.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client

BATCH_HEADER_BYTES = 61
"""A v2 record batch's header: base offset (8), length (4), leader epoch (4), magic (1), CRC (4),
attributes (2), last offset delta (4), first and max timestamps (8 + 8), producer id (8) and
epoch (2), base sequence (4), record count (4). The records (compressed, here) follow it."""
COMPRESSION_MASK = 0x07


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


def damage_lost(settings: Settings, topic: str, lost: int) -> None:
    """Damage the batch(es) ``fill`` wrote the ``lost`` records in (offsets 1 to ``lost``;
    librdkafka may still split them in two batches)."""
    damaged = damage_compressed_batches(settings, topic, 0)
    assert damaged and damaged[0] == 1 and damaged[-1] <= lost, damaged


def fill(
    settings: Settings,
    topic: str,
    goods: list[bytes],
    lost: int,
    written_ms: int | None = None,
    lost_value: bytes = b'{"lost": 0}',
) -> None:
    """``goods[0]``, one gzip batch of ``lost`` records (``lost_value`` each), then the other
    goods, all in partition 0 of ``topic``, each good in a batch of its own."""
    plain = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    packed = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "compression.type": "gzip",
            "linger.ms": 1000,  # the lost records travel in one batch
        }
    )

    at = written_ms or 0  # 0: the time of producing
    packed.list_topics(topic, timeout=30)  # known before the first record: one batch, not two

    def good(value: bytes) -> None:
        plain.produce(topic, key=value, value=value, partition=0, timestamp=at)
        assert plain.flush(30) == 0

    good(goods[0])
    for _ in range(lost):
        packed.produce(topic, key=b"lost", value=lost_value * 20, partition=0, timestamp=at)
    assert packed.flush(30) == 0
    for value in goods[1:]:
        good(value)
