"""A DLQ read ends: on a real broker, live traffic past a range's end keeps no read waiting on a
partition that answers nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.dlq import clients, reader
from claimx_flow.dlq.clients import DlqError
from tests.live_traffic import live_traffic


def test_a_silent_partition_fails_the_read_while_another_gets_live_traffic(
    kafka_bootstrap: str, make_topic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One idle clock for all partitions, kept young by records re-failing into partition 0
    past its range, held a replay forever on a partition whose leader was gone. A partition
    the broker does not have stands in for it: both answer nothing, and a one-broker cluster
    cannot lose a leader."""
    monkeypatch.setattr(reader, "IDLE_TIMEOUT_S", 3.0)
    topic = make_topic(2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for _ in range(3):
        producer.produce(topic, b"x", partition=0)
    assert producer.flush(30) == 0
    consumer = clients.reader(Settings(kafka_bootstrap_servers=kafka_bootstrap))
    read: list[int] = []
    started = time.monotonic()
    try:
        with (
            live_traffic(producer, topic, 0),
            pytest.raises(DlqError, match=r"no records arrive from partitions \[7\]"),
        ):
            for letter in reader.read_range(consumer, topic, {0: 0, 7: 0}, {0: 3, 7: 5}):
                read.append(letter.offset)
        took = time.monotonic() - started
    finally:
        consumer.close()
    assert read == [0, 1, 2]
    assert took < 12, f"the read failed only after the live traffic stopped ({took:.1f}s)"
