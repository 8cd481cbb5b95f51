"""Where generated events go: JSON lines to a stream, or straight to a Kafka topic.

The Kafka path checks every delivery, like the pipeline's own sinks: a benchmark that lost part
of its input would measure nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import failure_reason, produce_or_wait, producer_config
from claimx_flow.kafka.topics import ADMIN_TIMEOUT_S

_WRITE_BATCH = 4096


class EventDeliveryError(ClaimxError):
    """Some generated events were not stored by Kafka."""


def write_lines(lines: Iterable[tuple[str, str]], out: TextIO) -> int:
    """Write one JSON object per line; returns how many."""
    count = 0
    batch: list[str] = []
    for _, line in lines:
        batch.append(line)
        if len(batch) == _WRITE_BATCH:
            out.write("\n".join(batch) + "\n")
            count += len(batch)
            batch.clear()
    if batch:
        out.write("\n".join(batch) + "\n")
        count += len(batch)
    out.flush()
    return count


def produce_lines(
    lines: Iterable[tuple[str, str]], topic: str, settings: Settings, flush_timeout_s: float = 60
) -> int:
    """Produce each line keyed by its project id; fails unless every one was acknowledged,
    and at once on a broker it cannot reach (rather than after the whole flush timeout)."""
    producer = Producer(producer_config(settings))
    try:
        producer.list_topics(topic, timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        raise EventDeliveryError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: "
            f"{failure_reason(producer, exc)}"
        ) from None
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(str(error))

    count = 0
    for key, line in lines:
        produce_or_wait(
            producer, topic, value=line.encode(), key=key.encode(), on_delivery=delivered
        )
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(flush_timeout_s)
    if remaining or failures:
        lost = remaining + len(failures)
        detail = f": {failures[0]}" if failures else f" (still queued after {flush_timeout_s}s)"
        raise EventDeliveryError(f"{lost} of {count} events not delivered to {topic}{detail}")
    return count
