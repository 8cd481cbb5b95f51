"""The trace reads one partition of a keyed topic: the partition it computes must be the one
librdkafka really chose, for the stages' partitioner and the others it knows."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import producer_config
from claimx_flow.trace.partitioner import partition_for, partitioner_of

KEYS = [b"5000001", b"97138881", b"x", b"ab", b"abc", b"abcd", b"abcde", "projet-é".encode()]


@pytest.mark.parametrize("partitioner", ["consistent_random", "murmur2_random", "fnv1a_random"])
def test_the_computed_partition_is_where_librdkafka_put_the_message(
    kafka_bootstrap: str, make_topic: Callable[..., str], partitioner: str
) -> None:
    topic = make_topic(partitions=7, prefix="trace-part")
    config = producer_config(Settings(kafka_bootstrap_servers=kafka_bootstrap))
    if partitioner != "consistent_random":
        config["partitioner"] = partitioner
    producer = Producer(config)
    landed: dict[bytes, int] = {}

    def delivered(error: object, message: object) -> None:
        assert error is None
        landed[message.key()] = message.partition()  # type: ignore[attr-defined]

    keys = KEYS + [str(n).encode() for n in range(5_000_000, 5_000_040)]
    for key in keys:
        producer.produce(topic, key=key, value=b"v", on_delivery=delivered)
    assert producer.flush(30) == 0
    chosen = partitioner_of(config)
    assert {key: partition_for(key, 7, chosen) for key in keys} == landed


def test_the_stages_partitioner_is_librdkafkas_default() -> None:
    config = producer_config(Settings(kafka_bootstrap_servers="127.0.0.1:9"))
    assert partitioner_of(config) == "consistent_random"
    assert partition_for(b"1", 6, "random") is None
