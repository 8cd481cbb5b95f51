"""What librdkafka's fetch timers cost the stages' Kafka inputs.

Two timers decide how soon a consumer fetches a partition again, whatever the fetch sizes:

- ``fetch.queue.backoff.ms`` (1 s by default): a partition whose local queue has reached
  ``queued.max.messages.kbytes`` is not fetched again until it expires, however soon the queue
  is drained (``rd_kafka_toppar_fetch_decide`` in librdkafka's ``rdkafka_fetcher.c``);
- a resumed partition is fetched again only when the fetcher next looks at it, about a second
  after its pause; a seek to the position makes it fetch at once.

Starts a broker of its own, then measures both with the stages' own consumer settings and
operator, against the same without each fix:

- *drain*: six consumers, one per partition as a stage's input holds them, read a preloaded
  topic as fast as they can (messages/s);
- *release*: the retry stage's due-time source holds 100,000 messages falling due over 10 s
  and releases them (lateness after the due time, p50/p95/p99/max).

    python -m claimx_flow.lab.bench.fetch_timers --rounds 2
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config, produce_or_wait
from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.measure import percentiles
from claimx_flow.lab.stack.kafka import scratch_broker
from operators.due_time import HOLDING_CONSUMER, DueTimeTopic, QuietReleases
from operators.kafka import PARTITION_CONSUMER, consumer_settings

PARTITIONS = 6
_DUE = "due"


def _client(bootstrap: str) -> dict[str, Any]:
    """The stages' own client settings, for the scratch broker."""
    return client_config(Settings(kafka_bootstrap_servers=bootstrap))


def _topic(bootstrap: str, name: str) -> str:
    name = f"{name}-{uuid.uuid4().hex[:8]}"
    return kafka_io.create_topic(Settings(kafka_bootstrap_servers=bootstrap), name, PARTITIONS)


def _fill(
    bootstrap: str, topic: str, count: int, value: bytes, headers: Callable[[int], Any]
) -> None:
    producer = Producer({**_client(bootstrap), "linger.ms": 20})
    for i in range(count):
        key = str(i).encode()
        produce_or_wait(
            producer, topic, value=value, key=key, partition=i % PARTITIONS, headers=headers(i)
        )
    producer.flush(60)


def _without(settings: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key != name}


def drain_rate(bootstrap: str, topic: str, settings: dict[str, Any]) -> float:
    """Messages a second read by one consumer per partition, polled in turn on one thread."""
    config = consumer_settings(_client(bootstrap), f"drain-{uuid.uuid4().hex[:8]}", **settings)
    consumers = []
    for partition in range(PARTITIONS):
        consumer = Consumer({**config, "enable.partition.eof": True})
        consumer.assign([TopicPartition(topic, partition, 0)])
        consumers.append(consumer)
    done: set[int] = set()
    count, first = 0, 0.0
    while len(done) < PARTITIONS:
        for partition, consumer in enumerate(consumers):
            for msg in consumer.consume(500, 0.001) if partition not in done else []:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(partition)
                    continue
                first = first or time.monotonic()
                count += 1
    seconds = time.monotonic() - first
    for consumer in consumers:
        consumer.close()
    return count / seconds


class _ResumeOnly(DueTimeTopic):
    """The due-time source as it was before ``f7e98d9``: a resume without a seek."""

    def _pause_while_waiting(self, partition: int, held: Any) -> None:
        waiting = bool(held.ahead)
        if waiting != held.paused:
            where = [TopicPartition(self._topic, partition)]
            (self._consumer.pause if waiting else self._consumer.resume)(where)
            held.paused = waiting


if "_pause_while_waiting" not in vars(DueTimeTopic):  # else "no seek" would measure the seek
    raise ImportError("DueTimeTopic no longer resumes in _pause_while_waiting: mend _ResumeOnly")


class _Lateness(QuietReleases):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def released(self, topic: str, lateness_s: float) -> None:
        self.seconds.append(lateness_s)


def release_lateness(
    bootstrap: str,
    settings: dict[str, Any],
    source: type[DueTimeTopic],
    count: int,
    spread_s: float,
    lead_s: float,
) -> dict[str, float]:
    """Seconds after their due time that ``count`` held messages, due over ``spread_s`` from
    ``lead_s`` after the first is written (the feed must finish first), were released."""
    topic = _topic(bootstrap, "held")
    value = b"v" * 1200  # a failed task with its failure headers is 1-2 KB
    first_due = datetime.now(UTC) + timedelta(seconds=lead_s)

    def due(i: int) -> list[tuple[str, bytes]]:
        return [(_DUE, (first_due + timedelta(seconds=spread_s * i / count)).isoformat().encode())]

    _fill(bootstrap, topic, count, value, due)
    if datetime.now(UTC) > first_due:
        raise RuntimeError(f"the feed outlasted --lead ({lead_s:g} s): raise it")
    lateness = _Lateness()
    held = source(
        consumer_settings(_client(bootstrap), f"held-{topic}", **settings),
        topic,
        range(PARTITIONS),
        None,
        due_at=lambda record: datetime.fromisoformat(dict(record.headers)[_DUE].decode()),
        batch_size=500,
        stop_at_end=False,
        observer=lateness,
    )
    deadline = time.monotonic() + spread_s + 120
    try:
        while len(lateness.seconds) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(lateness.seconds):,} of {count:,} released in time")
            held.next_batch()
            wake = held.next_awake()
            if wake is not None:
                time.sleep(max(0.0, (wake - datetime.now(UTC)).total_seconds()))
    finally:
        held.close()
    return percentiles(lateness.seconds, (50, 95, 99))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300_000, help="drain: preloaded")
    parser.add_argument("--held", type=int, default=100_000, help="release: held messages")
    parser.add_argument("--spread", type=float, default=10.0, help="release: seconds due over")
    parser.add_argument("--lead", type=float, default=8.0, help="release: seconds to the first")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    backoff = "fetch.queue.backoff.ms"
    drains = {
        "stage input": PARTITION_CONSUMER,
        "stage input, default backoff": _without(PARTITION_CONSUMER, backoff),
    }
    releases: dict[str, tuple[dict[str, Any], type[DueTimeTopic]]] = {
        "retry stage": (HOLDING_CONSUMER, DueTimeTopic),
        "retry stage, no seek": (HOLDING_CONSUMER, _ResumeOnly),
        "retry stage, default backoff": (_without(HOLDING_CONSUMER, backoff), DueTimeTopic),
        "before f7e98d9 (1 MiB/6 MiB, default backoff, no seek)": (
            {
                **_without(HOLDING_CONSUMER, backoff),
                "queued.max.messages.kbytes": 6 * 1024,
                "fetch.max.bytes": 6 * 1024 * 1024,
                "max.partition.fetch.bytes": 1024 * 1024,
            },
            _ResumeOnly,
        ),
    }
    with scratch_broker("claimx-fetch-timers-") as broker:
        preloaded = _topic(broker.endpoint, "drain")
        value = b'{"payload":"' + b"a" * 600 + b'"}'
        _fill(broker.endpoint, preloaded, args.messages, value, lambda i: None)
        for round_ in range(1, args.rounds + 1):
            for name, settings in drains.items():
                rate = drain_rate(broker.endpoint, preloaded, settings)
                print(f"round {round_}: drain, {name}: {rate:,.0f} messages/s", flush=True)
            for name, (settings, source) in releases.items():
                late = release_lateness(
                    broker.endpoint, settings, source, args.held, args.spread, args.lead
                )
                print(
                    f"round {round_}: release, {name}: late p50 {late['p50']:.3f} s, "
                    f"p95 {late['p95']:.3f} s, p99 {late['p99']:.3f} s, "
                    f"max {late['max']:.3f} s ({args.held:,} due over {args.spread:g} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
