"""Kafka in and out through real dataflows on a real broker, on 1 and 2 workers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main
from confluent_kafka import Consumer, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config, consumer_config, producer_config
from claimx_flow.kafka.positions import CommittedPosition, committed_positions
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from operators.kafka import (
    CheckedProducer,
    DeliveryError,
    KafkaInput,
    KafkaPartition,
    Progress,
    checked_records_output,
)
from tests.topic_config import set_topic_config


def _fill(settings: Settings, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for i in range(count):
        producer.produce(
            topic, key=f"k{i % 13}", value=str(i).encode(), headers=[("n", str(i).encode())]
        )
    assert producer.flush(30) == 0


def _drain(settings: Settings, topic: str, expected: int) -> list[tuple[bytes, bytes, list]]:
    consumer = Consumer(consumer_config(settings, group_id=f"drain-{topic}"))
    consumer.subscribe([topic])
    out = []
    idle = 0
    while len(out) < expected and idle < 20:
        batch = consumer.consume(500, 1.0)
        idle = 0 if batch else idle + 1
        out.extend((m.key(), m.value(), m.headers() or []) for m in batch if m.error() is None)
    # Nothing more than expected arrives.
    out.extend((m.key(), m.value(), []) for m in consumer.consume(500, 2.0) if m.error() is None)
    consumer.close()
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_input_to_checked_output_moves_every_record(
    kafka_settings: Settings, make_topic: Callable[..., str], workers: int
) -> None:
    source, target = make_topic(partitions=3), make_topic(partitions=2)
    _fill(kafka_settings, source, 2_000)

    def forward(record: KafkaRecord) -> OutboundRecord:
        # Every field in its place (records are built with tuple.__new__, not by name).
        assert record.topic == source and record.error is None
        assert record.timestamp_ms is not None and record.timestamp_ms > 1_600_000_000_000
        headers = [*record.headers, ("from", record.position.encode())]
        return OutboundRecord(target, record.key, record.value, headers)

    flow = Dataflow("kafka-io")
    records = op.input(
        "in", flow, KafkaInput(client_config(kafka_settings), "test", [source], stop_at_end=True)
    )
    checked_records_output(
        "out", op.map("forward", records, forward), producer_config(kafka_settings)
    )
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    out = _drain(kafka_settings, target, 2_000)
    assert len(out) == 2_000
    assert sorted(int(v) for _, v, _ in out) == list(range(2_000))
    for key, value, headers in out:
        header = dict(headers)
        assert header["n"] == value
        assert header["from"].decode().startswith(f"{source}[")
        assert key == f"k{int(value) % 13}".encode()


def test_confirming_sends_at_once_whatever_the_linger(
    kafka_settings: Settings, make_topic: Callable[..., str]
) -> None:
    """``KAFKA_LINGER_MS`` lets a partition's messages gather before they are sent; an epoch's
    confirmation must not wait it out. librdkafka's ``flush()`` overrides ``linger.ms`` for
    as long as it runs (confluentinc/librdkafka#3489, fixed by #3494 in v1.8.0)."""
    topic = make_topic(partitions=1)
    settings = kafka_settings.model_copy(update={"kafka_linger_ms": 1_000})
    producer = CheckedProducer(producer_config(settings))
    producer.write_batch([OutboundRecord(topic, b"warm", b"up")])  # connect, learn the leader
    records = [OutboundRecord(topic, f"k{i}".encode(), str(i).encode()) for i in range(5)]
    for _ in range(3):
        started = time.monotonic()
        producer.write_batch(records)
        assert time.monotonic() - started < 0.9  # a lingering flush takes the full second
    written = [int(v) for k, v, _ in _drain(kafka_settings, topic, 16) if k != b"warm"]
    assert sorted(written) == sorted(list(range(5)) * 3)


def test_undeliverable_message_fails_the_step(kafka_settings: Settings) -> None:
    """A message Kafka cannot store must stop the dataflow, never vanish. A message is never
    timed out, so a topic that does not exist is refused once librdkafka stops waiting for it
    to appear (``topic.metadata.propagation.max.ms``, 30 s by default; 1 s here)."""
    flow = Dataflow("kafka-refused")
    records = op.input("in", flow, TestingSource([OutboundRecord("no.such.topic", b"k", b"v")]))
    config = producer_config(kafka_settings, **{"topic.metadata.propagation.max.ms": 1_000})
    checked_records_output("out", records, config)
    with pytest.raises(Exception) as caught:
        cluster_main(flow, [], 0)
    assert any(isinstance(e, DeliveryError) for e in _chain(caught.value))


def test_message_the_broker_refuses_fails_the_step(
    kafka_settings: Settings, make_topic: Callable[..., str]
) -> None:
    """Only failed deliveries are reported back to the sink; a refusal must still stop it."""
    topic = make_topic(partitions=1)
    set_topic_config(kafka_settings, topic, max_message_bytes="2000")
    fits, too_big = os.urandom(100), os.urandom(50_000)  # random: lz4 cannot shrink it
    flow = Dataflow("kafka-too-big")
    records = op.input(
        "in", flow, TestingSource([OutboundRecord(topic, b"k", v) for v in (fits, too_big)])
    )
    checked_records_output("out", records, producer_config(kafka_settings))
    with pytest.raises(Exception) as caught:
        cluster_main(flow, [], 0)
    refused = [e for e in _chain(caught.value) if isinstance(e, DeliveryError)]
    assert refused and "refused by Kafka" in str(refused[0])


def _chain(error: BaseException | None) -> list[BaseException]:
    """The exception and its causes: Bytewax wraps what a step raised."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def test_missing_input_topic_is_a_clear_error(kafka_settings: Settings) -> None:
    flow = Dataflow("kafka-missing")
    records = op.input(
        "in",
        flow,
        KafkaInput(client_config(kafka_settings), "test", ["absent.topic"], stop_at_end=True),
    )
    op.inspect("seen", records)
    with pytest.raises(Exception) as caught:
        cluster_main(flow, [], 0)
    assert any("absent.topic is missing" in str(e) for e in _chain(caught.value))


def _read_to(partition: KafkaPartition, last: int) -> list[int]:
    """The offsets a partition hands on until it hands on ``last``, and a few polls more."""
    offsets: list[int] = []
    deadline = time.monotonic() + 30
    while last not in offsets:
        assert time.monotonic() < deadline, offsets
        offsets += [record.offset for record in partition.next_batch()]
        time.sleep(0.01)
    for _ in range(20):
        offsets += [record.offset for record in partition.next_batch()]
        time.sleep(0.01)
    return offsets


def test_a_published_position_says_when_it_was_snapshotted_and_stays_recent(
    kafka_settings: Settings, make_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = make_topic(partitions=1)
    _fill(kafka_settings, topic, 5)
    source = KafkaInput(client_config(kafka_settings), f"g-{topic}", [topic])
    partition = source.partition(f"0-{topic}", None)
    consumer = Consumer(consumer_config(kafka_settings, group_id=f"g-{topic}"))
    try:

        def published(offset: int = 5) -> CommittedPosition:
            for _ in range(50):  # the commit is asynchronous
                found = committed_positions(consumer, topic, [0])
                if 0 in found and found[0].offset == offset:
                    return found[0]
                time.sleep(0.1)
            raise AssertionError(f"offset {offset} not published")

        assert published(0).snapshot_at is not None  # where it starts (see the next test)
        before = time.time()
        assert _read_to(partition, 4) == [0, 1, 2, 3, 4]
        partition.snapshot()  # this epoch's position, published once the next is done
        partition.snapshot()
        partition.next_batch()
        first = published()
        assert first.offset == 5 and first.snapshot_at is not None
        assert before <= first.snapshot_at <= time.time()

        # A quiet partition publishes the same offset again, with a later time.
        monkeypatch.setattr(Progress, "REFRESH_S", 0.0)
        for _ in range(2):  # two more epochs
            time.sleep(0.05)
            partition.snapshot()
        partition.next_batch()
        for _ in range(50):
            again = published()
            if again.snapshot_at != first.snapshot_at:
                break
            time.sleep(0.1)
        assert again.offset == 5 and (again.snapshot_at or 0) > (first.snapshot_at or 0)
    finally:
        consumer.close()
        partition.close()


def test_a_partition_reads_past_the_offsets_sent_before(
    kafka_settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=1)
    _fill(kafka_settings, topic, 10)
    source = KafkaInput(
        client_config(kafka_settings),
        f"g-{topic}",
        [topic],
        sent_before=lambda t, p: {1, 4, 9, 42} if (t, p) == (topic, 0) else set(),
    )
    partition = source.partition(f"0-{topic}", 2)  # resumed from a snapshot at offset 2
    try:
        assert _read_to(partition, 8) == [2, 3, 5, 6, 7, 8]
        assert partition.snapshot() == 10  # the position moves on past what it read past
    finally:
        partition.close()


def test_a_start_publishes_where_it_starts_only_where_no_time_is_published(
    kafka_settings: Settings, make_topic: Callable[..., str]
) -> None:
    """A crash before the first snapshot is published must leave the next start a time to read
    the routings of the crashed run from (``routing.ledger``), and it must be there before the
    first message is read (read at once below, with no wait); a time already published, an
    earlier run's, is kept, since it covers more."""
    topic = make_topic(partitions=2)
    _fill(kafka_settings, topic, 6)
    group = f"g-{topic}"
    consumer = Consumer(consumer_config(kafka_settings, group_id=group))
    # partition 1: a position published by other means (an upgrade from before times)
    consumer.commit(offsets=[TopicPartition(topic, 1, 2)], asynchronous=False)
    source = KafkaInput(client_config(kafka_settings), group, [topic])

    def published() -> dict[int, CommittedPosition]:
        found = committed_positions(consumer, topic, [0, 1])
        assert all(p in found and found[p].snapshot_at is not None for p in (0, 1)), found
        return found

    try:
        before = time.time()
        parts = [source.partition(f"{p}-{topic}", None) for p in (0, 1)]
        first = published()
        assert (first[0].offset, first[1].offset) == (0, 2)  # the beginning; the group's
        assert all(before <= (first[p].snapshot_at or 0) <= time.time() for p in (0, 1))
        for part in parts:
            part.close()

        time.sleep(0.05)
        parts = [source.partition(f"{p}-{topic}", None) for p in (0, 1)]
        time.sleep(1)  # what it would have published by now
        assert published() == first  # an earlier run's time is kept
    finally:
        for part in parts:
            part.close()
        consumer.close()
