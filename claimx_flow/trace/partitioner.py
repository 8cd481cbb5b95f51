"""Which partition a keyed message goes to, computed as the producer computes it.

The stages produce with librdkafka's default partitioner, ``consistent_random``: CRC-32 of the
key modulo the partition count (a message without a key goes to a random partition). Knowing
that, a trace reads one partition of a keyed topic instead of all of them. The Java client's
``murmur2`` and librdkafka's ``fnv1a`` are computed too, for a producer configured with them;
any other partitioner gives ``None`` (read every partition).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_PARTITIONER = "consistent_random"
"""librdkafka's default, and so the stages' (``producer_config`` names none)."""


def crc32(key: bytes) -> int:
    return zlib.crc32(key) & 0xFFFFFFFF


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 (the Java client's and librdkafka's ``murmur2``), 32 bits unsigned."""
    m, r = 0x5BD1E995, 24
    length = len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = key[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def fnv1a(key: bytes) -> int:
    """32-bit FNV-1a as librdkafka's ``fnv1a`` partitioner takes it: the absolute value of
    the hash read as a signed 32-bit number (Sarama's hash partitioner)."""
    h = 0x811C9DC5
    for byte in key:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    signed = h - (1 << 32) if h & 0x80000000 else h
    return abs(signed) & 0xFFFFFFFF


_KEYED: dict[str, Callable[[bytes], int]] = {
    "consistent": crc32,
    "consistent_random": crc32,
    "murmur2": lambda key: murmur2(key) & 0x7FFFFFFF,
    "murmur2_random": lambda key: murmur2(key) & 0x7FFFFFFF,
    "fnv1a": fnv1a,
    "fnv1a_random": fnv1a,
}


def partitioner_of(config: Mapping[str, Any]) -> str:
    """The partitioner a producer built from ``config`` uses."""
    return str(config.get("partitioner", DEFAULT_PARTITIONER))


def partition_for(
    key: bytes, partitions: int, partitioner: str = DEFAULT_PARTITIONER
) -> int | None:
    """The partition ``key`` goes to among ``partitions``, or ``None`` when it cannot be known
    (an unknown partitioner, no partitions)."""
    hashing = _KEYED.get(partitioner)
    if hashing is None or partitions <= 0:
        return None
    return hashing(key) % partitions
