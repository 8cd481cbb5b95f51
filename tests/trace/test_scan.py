"""Reading the Kafka window: the ends of a read and of a look-up, on a real broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.trace import scan
from claimx_flow.trace.scan import KafkaWindow, Range, TraceError
from tests.live_traffic import live_traffic


def _filled(bootstrap: str, topic: str, partitions: int, count: int) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(partitions):
        for _ in range(count):
            producer.produce(topic, b"x", partition=partition)
    assert producer.flush(30) == 0
    return producer


def test_a_silent_partition_is_given_up_while_others_stay_busy(
    kafka_bootstrap: str, make_topic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live traffic on a partition already read to its end kept one shared idle clock young,
    so a partition that never answered held the read until the traffic stopped. A partition
    the broker does not have stands in for one whose leader is gone: both answer nothing, and
    a one-broker cluster cannot lose a leader."""
    monkeypatch.setattr(scan, "IDLE_TIMEOUT_S", 3.0)  # a busy 2-core machine fetches late
    topic = make_topic(2)
    producer = _filled(kafka_bootstrap, topic, 2, 3)
    with (
        live_traffic(producer, topic, 0),
        KafkaWindow(Settings(kafka_bootstrap_servers=kafka_bootstrap), 5) as window,
    ):
        ranges = [Range(topic, 0, 0, 3), Range(topic, 1, 1, 3), Range(topic, 7, 0, 5)]
        started = time.monotonic()
        read = [(m.partition(), m.offset()) for m in window.read(ranges)]
        took = time.monotonic() - started
        stalled = window.stalled
    assert sorted(read) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]
    assert stalled == [f"{topic}[7]"]
    assert took < 12, f"the read ended only after the live traffic did ({took:.1f}s)"


class _OnePartitionUnanswered:
    """The real consumer, except that partition 1 of a look-up by time comes back with an
    error, as from a broker whose leader for it is being elected. A one-broker cluster never
    answers one partition of a ListOffsets with an error while answering its watermarks."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)

    def offsets_for_times(self, asked: list[TopicPartition], timeout: float) -> list[Any]:
        found = self.consumer.offsets_for_times(asked, timeout=timeout)
        error = KafkaError(KafkaError.LEADER_NOT_AVAILABLE, "Broker: Leader not available")
        return [_Unanswered(tp.topic, 1, error) if tp.partition == 1 else tp for tp in found]


class _Unanswered:
    def __init__(self, topic: str, partition: int, error: KafkaError) -> None:
        self.topic, self.partition, self.offset, self.error = topic, partition, -1, error


def test_a_partition_the_look_up_could_not_answer_stops_the_trace(
    kafka_bootstrap: str, make_topic: Any
) -> None:
    """Its offset -1 read as an empty range: the partition went unread without a word."""
    topic = make_topic(2)
    _filled(kafka_bootstrap, topic, 2, 3)
    with KafkaWindow(Settings(kafka_bootstrap_servers=kafka_bootstrap), 0.5) as window:
        window.consumer = _OnePartitionUnanswered(window.consumer)
        with pytest.raises(TraceError) as raised:
            window.ranges(topic, [0, 1], 0)
    assert str(raised.value) == (
        f"cannot find the offsets of {topic} at the start of the window: "
        f"{topic}[1]: Broker: Leader not available"
    )
