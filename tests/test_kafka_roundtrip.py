"""The broker the suite runs on really stores and returns what we send."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import consumer_config, producer_config

MESSAGES = 10_000


def test_ten_thousand_messages_round_trip_with_keys_and_headers(
    kafka_settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=4)
    producer = Producer(producer_config(kafka_settings))
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    sent = {}
    for i in range(MESSAGES):
        key = f"project-{i % 97}"
        value = f'{{"n": {i}}}'.encode()
        headers = [("attempt", str(i % 5).encode()), ("stage", b"test")]
        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
        sent[i] = (key, headers)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    consumer = Consumer(consumer_config(kafka_settings, group_id=f"{topic}-reader"))
    consumer.subscribe([topic])
    received: dict[int, tuple[str, list[tuple[str, bytes]], int]] = {}
    partitions_by_key: dict[str, set[int]] = {}
    try:
        idle = 0
        while len(received) < MESSAGES and idle < 30:
            batch = consumer.consume(num_messages=1000, timeout=1.0)
            idle = 0 if batch else idle + 1
            for msg in batch:
                assert msg.error() is None
                n = int(msg.value().decode().split(":")[1].rstrip("}"))
                key = msg.key().decode()
                received[n] = (key, list(msg.headers() or []), msg.partition())
                partitions_by_key.setdefault(key, set()).add(msg.partition())
    finally:
        consumer.close()

    assert len(received) == MESSAGES
    for i, (key, headers) in sent.items():
        got_key, got_headers, _ = received[i]
        assert got_key == key
        assert got_headers == headers
    # Keys spread over every partition, and each key stays in one partition.
    assert {p for _, _, p in received.values()} == {0, 1, 2, 3}
    assert all(len(parts) == 1 for parts in partitions_by_key.values())
