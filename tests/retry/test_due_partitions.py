"""One consumer per tier topic: a partition whose head waits does not hold back another
partition's due messages, and the retry stage holds one consumer per tier, not per partition."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import cluster_main
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from claimx_flow.kafka.clients import client_config
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.routing.tiers import DUE_HEADER, all_tiers, enrichment_ladder
from dataflows import retry
from operators.due_time import DueTimeInput
from tests.dlq.helpers import read_all
from tests.isolation import isolated_settings


def test_a_waiting_head_holds_back_only_its_own_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)
    tier = enrichment_ladder(settings).tiers[0]
    written = datetime.now(UTC) - timedelta(seconds=tier.delay_s)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition, value, due_in_s in ((0, b"later", 4.0), (1, b"now", -1.0)):
        due = (written + timedelta(seconds=tier.delay_s + due_in_s)).isoformat().encode()
        producer.produce(
            tier.topic,
            key=value,
            value=value,
            partition=partition,
            headers=[(DUE_HEADER, due)],
            timestamp=int(written.timestamp() * 1000),
        )
    assert producer.flush(30) == 0

    later_due = written + timedelta(seconds=tier.delay_s + 4.0)
    cluster_main(retry.build(settings), [], 0)
    released = read_all(kafka_bootstrap, settings.claimx_enrichment_pending_topic)
    assert sorted(m.value or b"" for m in released) == [b"later", b"now"]
    assert datetime.now(UTC) >= later_due  # "later" waited for its time


def test_the_retry_stage_reads_each_tier_through_one_consumer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    topics = [tier.topic for tier in all_tiers(settings)]
    source = DueTimeInput(client_config(settings), "g", topics, lambda r: datetime.now(UTC))
    assert source.list_parts() == topics  # one source partition, one consumer, per tier


COUNT = 6_000


def test_partitions_paused_and_resumed_many_times_release_each_message_once_in_order(
    kafka_bootstrap: str,
) -> None:
    """A partition is paused while its head waits and resumed, with a seek to the first record
    not handed over, once it is released: with 1 KB messages due over two seconds, each of the
    two partitions goes through several of those cycles, and every message still leaves
    once, in its partition's order, never before its due time."""
    seeks: list[TopicPartition] = []
    _holds_every_message_to_its_time(_release_all(kafka_bootstrap, seeks=seeks))
    for partition in (0, 1):
        offsets = [seek.offset for seek in seeks if seek.partition == partition]
        assert len(offsets) >= 5
        assert offsets == sorted(set(offsets))
        assert offsets[0] > 0 and offsets[-1] <= COUNT // 2


def test_a_refused_seek_only_delays_the_resumed_partition(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The seek only hastens the fetch: were librdkafka to refuse it, the resume alone fetches
    from the same record, and nothing is lost, repeated or released early."""
    caplog.set_level(logging.DEBUG, logger="operators.kafka")  # where seek_past logs
    _holds_every_message_to_its_time(_release_all(kafka_bootstrap, refuse_seeks=True))
    assert "seek refused" in caplog.text


def _due_at(record: KafkaRecord) -> datetime:
    return datetime.fromisoformat(dict(record.headers)[DUE_HEADER].decode())


def _release_all(
    kafka_bootstrap: str,
    *,
    refuse_seeks: bool = False,
    seeks: list[TopicPartition] | None = None,
) -> list[tuple[KafkaRecord, datetime]]:
    """COUNT messages of 1 KB due over two seconds, over two partitions, released by the
    retry stage's own source; each with the moment it left."""
    topic = f"held-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    # Room for producing 6 MB on a loaded machine: messages already due when the source starts
    # are released without a pause, and the seeks this counts would not happen.
    first_due = datetime.now(UTC) + timedelta(seconds=6)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for i in range(COUNT):
        due = first_due + timedelta(seconds=2.0 * i / COUNT)
        producer.produce(
            topic,
            b"v" * 1000,
            str(i).encode(),
            partition=i % 2,
            headers=[(DUE_HEADER, due.isoformat().encode())],
        )
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0

    source = DueTimeInput({"bootstrap.servers": kafka_bootstrap}, f"g-{topic}", [topic], _due_at)
    source.list_parts()
    part = source.build_part("tiers", topic, None)
    # The real consumer, its seeks recorded, or refused: librdkafka refuses one only for a
    # partition it is stopping, which a test cannot bring about between two polls.
    part._consumer = _Seeks(part._consumer, seeks, refuse_seeks)  # type: ignore[assignment]
    released: list[tuple[KafkaRecord, datetime]] = []
    deadline = time.monotonic() + 60
    try:
        while len(released) < COUNT and time.monotonic() < deadline:
            released.extend((record, datetime.now(UTC)) for record in part.next_batch())
            wake = part.next_awake()
            if wake is not None:
                time.sleep(max(0.0, (wake - datetime.now(UTC)).total_seconds()))
    finally:
        part.close()
    return released


class _Seeks:
    def __init__(self, consumer: Consumer, seen: list[TopicPartition] | None, refuse: bool) -> None:
        self._consumer, self._seen, self._refuse = consumer, seen, refuse

    def seek(self, partition: TopicPartition) -> None:
        if self._refuse:
            raise KafkaException(KafkaError(KafkaError._STATE, "seek refused"))
        if self._seen is not None:
            self._seen.append(partition)
        self._consumer.seek(partition)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def _holds_every_message_to_its_time(released: list[tuple[KafkaRecord, datetime]]) -> None:
    for partition in (0, 1):
        offsets = [r.offset for r, _ in released if r.partition == partition]
        assert offsets == list(range(COUNT // 2))
    assert all(at >= _due_at(record) for record, at in released)
