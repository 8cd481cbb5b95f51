"""How the Kafka input takes what librdkafka reports about a message it cannot read.

librdkafka's behaviour here is timing: it refetches a damaged batch about every 0.5 s and
queues one error per fetch, so a worker busy for longer meets two reports of the same offset in
one ``consume()``; it gives an error's leader epoch as 0; and it reports errors about the fetch
(a topic not authorised) at the fetch position, the next readable message. A real broker cannot
be made to hand over these sequences on demand, so a stand-in consumer replays them here (the
real path, a damaged batch on a real broker through a real stage, is
``tests/poison/test_unreadable_input.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

import operators.due_time as due_time
import operators.kafka as kafka
from operators.kafka import KafkaPartition, QuietObserver

TOPIC = "events"


@dataclass
class Message:
    offset_: int
    code: int | None = None
    epoch: int | None = 3

    def error(self) -> KafkaError | None:
        return None if self.code is None else KafkaError(self.code)

    def offset(self) -> int:
        return self.offset_

    def partition(self) -> int:
        return 0

    def topic(self) -> str:
        return TOPIC

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return None if self.code is not None else f"v{self.offset_}".encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def leader_epoch(self) -> int | None:
        return 0 if self.code is not None else self.epoch  # librdkafka's error op: zeroes


@dataclass
class Consumer:
    """Hands out the fetches it is given, one per ``consume``; records every seek."""

    fetches: list[list[Message]] = field(default_factory=list)
    seeks: list[TopicPartition] = field(default_factory=list)

    def __init__(self, config: dict[str, Any]) -> None:
        self.fetches, self.seeks = [], []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, 0) for p in partitions]

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def consume(self, count: int, timeout: float) -> list[Message]:
        return self.fetches.pop(0) if self.fetches else []

    def seek(self, where: TopicPartition) -> None:
        self.seeks.append(where)

    def get_watermark_offsets(self, partition: TopicPartition, cached: bool) -> tuple[int, int]:
        return (0, 100)

    def commit(self, **kwargs: Any) -> None:
        pass


@pytest.fixture
def partition(monkeypatch: pytest.MonkeyPatch) -> KafkaPartition:
    monkeypatch.setattr(kafka, "Consumer", Consumer)
    return KafkaPartition(
        {}, TOPIC, 0, None, batch_size=100, stop_at_end=False, observer=QuietObserver()
    )


def fetches(partition: KafkaPartition, *rounds: list[Message]) -> Consumer:
    consumer: Consumer = partition._consumer  # type: ignore[assignment]
    consumer.fetches.extend(rounds)
    return consumer


def test_two_reports_of_one_damaged_message_in_one_fetch_make_one_record(
    partition: KafkaPartition,
) -> None:
    """Found in review: the second report was placed at the next offset, a readable message,
    which was dead-lettered and skipped."""
    bad = KafkaError._BAD_COMPRESSION
    consumer = fetches(partition, [Message(0), Message(1, bad), Message(1, bad)], [Message(2)])

    first = partition.next_batch()
    assert [(r.offset, r.error is not None) for r in first] == [(0, False), (1, True)]
    (seek,) = consumer.seeks
    assert (seek.offset, seek.leader_epoch) == (2, None)  # past it, no epoch to check
    assert [(r.offset, r.value) for r in partition.next_batch()] == [(2, b"v2")]
    assert partition.snapshot() == 3


def test_a_damaged_batch_is_taken_one_offset_at_a_time(partition: KafkaPartition) -> None:
    """librdkafka reports a damaged batch at its first offset, whatever offset the fetch asked
    for: each lost record gets its own offset, and the reader goes on past the batch."""
    bad = KafkaError._BAD_COMPRESSION
    consumer = fetches(partition, [Message(1, bad)], [Message(1, bad)], [Message(1, bad)])
    consumer.fetches.append([Message(4)])
    partition._offset = 1
    lost = [partition.next_batch() for _ in range(3)]
    assert [[r.offset for r in batch] for batch in lost] == [[1], [2], [3]]
    assert [s.offset for s in consumer.seeks] == [2, 3, 4]
    assert [r.offset for r in partition.next_batch()] == [4]


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._TRANSPORT, KafkaError._FAIL]
)
def test_an_error_about_the_fetch_loses_no_message(partition: KafkaPartition, code: int) -> None:
    """Found in review: errors reported at the fetch position (the next readable message) were
    taken for a lost message there, dead-lettered, and read past: that message was lost."""
    consumer = fetches(partition, [Message(0), Message(1, code)], [Message(1)])
    assert [r.offset for r in partition.next_batch()] == [0]
    assert consumer.seeks == []
    assert [(r.offset, r.value) for r in partition.next_batch()] == [(1, b"v1")]


class HoldingConsumer(Consumer):
    """The stand-in, as the retry stage's source uses it: it also pauses and resumes."""

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass


def test_a_tier_reads_past_what_an_earlier_run_released_damaged_batch_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry stage's skip (``sent_before``) meets a damaged batch (offsets 3-5): what an
    earlier run released or dead-lettered is read past, everything else leaves once, and the
    position moves on past all of it."""
    monkeypatch.setattr(due_time, "Consumer", HoldingConsumer)
    topic = due_time.DueTimeTopic(
        {},
        TOPIC,
        [0],
        None,
        due_at=lambda record: datetime(2000, 1, 1, tzinfo=UTC),  # all due
        batch_size=100,
        stop_at_end=False,
        observer=due_time.QuietReleases(),
        sent_before=lambda t, p: {0, 1, 3, 4, 7} if (t, p) == (TOPIC, 0) else set(),
    )
    consumer: Consumer = topic._consumer  # type: ignore[assignment]
    bad = KafkaError._BAD_COMPRESSION
    consumer.fetches.extend(
        [
            [Message(0), Message(1), Message(2), Message(3, bad)],
            [Message(3, bad)],  # librdkafka reports the batch's first offset again
            [Message(3, bad)],
            [Message(6), Message(7), Message(8), Message(9)],
        ]
    )
    released = [
        (record.offset, record.error is not None) for _ in range(6) for record in topic.next_batch()
    ]
    assert released == [(2, False), (5, True), (6, False), (8, False), (9, False)]
    assert topic.snapshot() == {0: 10}
