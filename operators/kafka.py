"""Kafka input and output for the dataflows, with positions in recovery and checked deliveries.

Why not Bytewax's stock connectors: its sink registers no delivery callback and never checks
``flush()``, so a message the broker refused is lost without a trace. Ours fails the step, so the
epoch is not committed and recovery replays it. Our source uses the project's client settings
(SASL/SSL reach it like every other client) and hands the dataflow domain ``KafkaRecord``s that
remember their topic, partition and offset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import (
    client_config,
    consumer_config,
    produce_or_wait,
    producer_config,
)
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.runtime import health, metrics
from operators import shutdown

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 30.0


class DeliveryError(ClaimxError):
    """Kafka did not confirm a message; the step fails so recovery replays the epoch."""


class KafkaPartition(StatefulSourcePartition[KafkaRecord, int]):
    """One topic partition, read from the offset in the recovery snapshot."""

    def __init__(
        self,
        config: dict[str, Any],
        stage: str,
        topic: str,
        partition: int,
        offset: int,
        batch_size: int,
        stop_at_end: bool,
    ) -> None:
        self._consumer = Consumer({**config, "enable.partition.eof": stop_at_end})
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._at_end = False
        labels = {"stage": metrics.stage(), "topic": topic, "partition": str(partition)}
        self._lag = metrics.CONSUMER_LAG.labels(**labels)
        self._consumed = metrics.CONSUMED.labels(**labels)
        self._snapshots = metrics.OFFSET_SNAPSHOTS.labels(stage=labels["stage"], topic=topic)

    def next_batch(self) -> list[KafkaRecord]:
        if self._at_end or shutdown.requested():
            raise StopIteration
        health.heartbeat()
        batch: list[KafkaRecord] = []
        for msg in self._consumer.consume(self._batch_size, 0.001):
            error = msg.error()
            if error is not None:
                self._on_error(error)
                continue
            kind, timestamp = msg.timestamp()
            batch.append(
                KafkaRecord(
                    topic=self._topic,
                    partition=self._partition,
                    offset=int(msg.offset() or 0),
                    timestamp_ms=timestamp if kind else None,
                    key=msg.key(),
                    value=msg.value(),
                    headers=_bytes_headers(msg.headers()),
                )
            )
        if batch:
            self._offset = batch[-1].offset + 1
            self._consumed.inc(len(batch))
            self._record_lag()
        return batch

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            self._at_end = True
            self._lag.set(0)
        elif error.fatal():
            raise ClaimxError(f"fatal Kafka error on {self._topic}[{self._partition}]: {error}")
        else:  # broker restarts and the like: librdkafka reconnects on its own
            log.warning("Kafka consumer on %s[%d]: %s", self._topic, self._partition, error)

    def _record_lag(self) -> None:
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, self._partition), cached=True
        )
        if high is not None and high >= 0:
            self._lag.set(max(high - self._offset, 0))

    def snapshot(self) -> int:
        self._snapshots.inc()
        self._publish_position()
        return self._offset

    def _publish_position(self) -> None:
        """Tell the stage's consumer group where it is, for lag tools (``kafka-consumer-groups``,
        KEDA). Only informational: a resume always starts from the recovery snapshot."""
        if self._offset < 0:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(self._topic, self._partition, self._offset)],
                asynchronous=True,
            )
        except KafkaException as exc:
            log.debug("offset not published for %s[%d]: %s", self._topic, self._partition, exc)

    def close(self) -> None:
        self._consumer.close()


def _bytes_headers(raw: Any) -> list[tuple[str, bytes]]:
    """Headers as (name, bytes) pairs; a header sent without a value becomes ``b""``."""
    return [(name, value or b"") for name, value in (raw or [])]


class KafkaInput(FixedPartitionedSource[KafkaRecord, int]):
    """Every partition of ``topics``; the offset of each lives only in recovery snapshots.

    ``stop_at_end`` (default ``CLAIMX_STOP_AT_END``) ends the input when every partition is
    drained (benchmarks, batch runs).
    """

    def __init__(
        self,
        settings: Settings,
        stage: str,
        topics: Iterable[str],
        *,
        batch_size: int = 1000,
        stop_at_end: bool | None = None,
    ) -> None:
        self._settings = settings
        self._stage = stage
        self._topics = list(topics)
        self._batch_size = batch_size
        self._stop_at_end = settings.claimx_stop_at_end if stop_at_end is None else stop_at_end

    def list_parts(self) -> list[str]:
        admin = AdminClient(client_config(self._settings))
        metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S)
        parts: list[str] = []
        for topic in self._topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                raise ClaimxError(
                    f"{self._stage}: topic {topic} is missing (run `claimx topics create`)"
                )
            parts.extend(f"{p}-{topic}" for p in sorted(described.partitions))
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> KafkaPartition:
        index, topic = for_part.split("-", 1)
        config = consumer_config(
            self._settings,
            group_id=self._settings.consumer_group(self._stage),
            **{"fetch.wait.max.ms": 50},
        )
        return KafkaPartition(
            config,
            self._stage,
            topic,
            int(index),
            OFFSET_BEGINNING if resume_state is None else resume_state,
            self._batch_size,
            self._stop_at_end,
        )


@dataclass
class _Deliveries:
    failed: list[str]

    def __call__(self, error: KafkaError | None, msg: Any) -> None:
        if error is not None:
            self.failed.append(f"{msg.topic()}: {error.str()}")


class CheckedProducerPartition(StatelessSinkPartition[OutboundRecord]):
    """Writes a batch and returns only once Kafka confirmed every message of it."""

    def __init__(self, config: dict[str, Any], flush_timeout_s: float) -> None:
        self._producer = Producer(config)
        self._flush_timeout_s = flush_timeout_s

    def write_batch(self, items: list[OutboundRecord]) -> None:
        deliveries = _Deliveries([])
        for record in items:
            self._produce(record, deliveries)
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            raise DeliveryError(
                f"{remaining} of {len(items)} messages not confirmed by Kafka "
                f"within {self._flush_timeout_s:.0f}s"
            )
        if deliveries.failed:
            raise DeliveryError(
                f"{len(deliveries.failed)} of {len(items)} messages refused by Kafka; first: "
                f"{deliveries.failed[0]}"
            )

    def _produce(self, record: OutboundRecord, on_delivery: _Deliveries) -> None:
        produce_or_wait(
            self._producer,
            record.topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers) if record.headers else None,
            on_delivery=on_delivery,
        )

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)


def checked_producer(settings: Settings, flush_timeout_s: float = 60.0) -> CheckedProducerPartition:
    """A producer that confirms every batch, for any sink that writes to Kafka."""
    return CheckedProducerPartition(_checked_config(settings, flush_timeout_s), flush_timeout_s)


def _checked_config(settings: Settings, flush_timeout_s: float) -> dict[str, Any]:
    """Producer settings of a checked sink.

    Only failed deliveries are reported back (``delivery.report.only.error``): a message still
    in the queue shows in ``flush()``'s count and a refused one in a report, so reports of
    successes told nothing, and each cost a Python callback per message on the worker.
    """
    return producer_config(
        settings,
        **{
            "delivery.timeout.ms": int(flush_timeout_s * 1000),
            "delivery.report.only.error": True,
        },
    )


class CheckedKafkaOutput(DynamicSink[OutboundRecord]):
    """Kafka sink with an idempotent producer (acks=all) and a checked delivery per message.

    The records carry their own topic, so one sink serves a stage's every output topic.
    """

    def __init__(self, settings: Settings, *, flush_timeout_s: float = 60.0) -> None:
        self._config = _checked_config(settings, flush_timeout_s)
        self._flush_timeout_s = flush_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> CheckedProducerPartition:
        return CheckedProducerPartition(dict(self._config), self._flush_timeout_s)
