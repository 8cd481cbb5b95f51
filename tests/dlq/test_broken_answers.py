"""Kafka answers a request but not for every partition: the replay and purge stop with one red
line instead of reading the missing answer as "no progress" (everything sent again) or as "every
record is older" (the whole partition deleted); progress past a partition's end is said aloud.

No broker here can be made to refuse one partition of an answer (it takes ACLs), so those tests
hand the real consumer's answer on with that partition's error set, as librdkafka reports one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from claimx_flow.dlq import clients
from tests.dlq.helpers import (
    PARTITIONS,
    Pipeline,
    claimx,
    failure,
    hour,
    put_letters,
    read_all,
    zulu,
)
from tests.dlq.helpers import watermarks as marks_of


@dataclass(frozen=True)
class _Refused:
    """One partition's part of an answer, refused: what ``TopicPartition`` carries then."""

    topic: str
    partition: int
    offset: int
    error: KafkaError


class _PartlyRefused:
    """A real consumer, but Kafka's answer to ``method`` refuses ``partition``."""

    def __init__(self, real: Consumer, method: str, partition: int) -> None:
        self._real, self._method, self._partition = real, method, partition

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._real, name)
        if name != self._method:
            return real

        def answer(*args: Any, **kwargs: Any) -> list[Any]:
            refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
            return [
                _Refused(tp.topic, tp.partition, -1, refused)
                if tp.partition == self._partition
                else tp
                for tp in real(*args, **kwargs)
            ]

        return answer


def _refusing(monkeypatch: pytest.MonkeyPatch, method: str, partition: int) -> None:
    made = clients.reader
    monkeypatch.setattr(
        clients, "reader", lambda *a, **k: _PartlyRefused(made(*a, **k), method, partition)
    )


def _fill(pipeline: Pipeline) -> None:
    origin = pipeline["enrichment.pending"]
    infos = [failure(f"evt_{i}", origin_topic=origin, project_id=f"p{i}") for i in range(6)]
    put_letters(pipeline, "enrichment.dlq", infos, timestamps=[hour(i) for i in range(6)])


def _one_red_line(text: str, *words: str) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    for word in words:
        assert word in lines[0], (word, text)


def test_replay_progress_refused_for_a_partition_stops_the_replay(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(pipeline)
    _refusing(monkeypatch, "committed", partition=1)

    result = claimx(pipeline, "replay", "enrichment")

    assert result.exit_code == 2, result.output
    _one_red_line(result.stderr, "replay progress", "[1]", "authorization failed")
    assert read_all(pipeline.bootstrap, pipeline["enrichment.pending"]) == []


def test_purge_before_refused_for_a_partition_deletes_nothing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(pipeline)
    filled = max(
        range(PARTITIONS),
        key=lambda p: marks_of(pipeline.bootstrap, pipeline["enrichment.dlq"])[p][1],
    )
    _refusing(monkeypatch, "offsets_for_times", partition=filled)

    result = claimx(pipeline, "purge", "enrichment", "--before", zulu(hour(3)), "--yes")

    assert result.exit_code == 2, result.output
    _one_red_line(result.stderr, "offsets by time", f"[{filled}]", "authorization failed")
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])) == 6


def test_progress_past_the_end_of_a_partition_is_said_and_replayed_from_its_start(
    pipeline: Pipeline,
) -> None:
    """The DLQ topic was deleted and made anew: the session's progress is past its end, and
    the records there now are new to it."""
    _fill(pipeline)
    group = pipeline.settings.consumer_group("dlq-replay-enrichment-all")
    stale = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": group})
    topic = pipeline["enrichment.dlq"]
    stale.commit(
        offsets=[TopicPartition(topic, p, 500) for p in range(PARTITIONS)], asynchronous=False
    )
    stale.close()

    result = claimx(pipeline, "replay", "enrichment", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["replayed"] == 6
    assert "warning:" in result.stderr and "at offset 500, past the end" in result.stderr
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.pending"])) == 6


def test_a_restart_past_the_end_is_saved_at_once_but_not_by_a_dry_run(
    pipeline: Pipeline,
) -> None:
    """Saved only once the run got there, the restart was lost to a run stopped first (here
    --max 1): the old position stayed, and once the partition grew past it, the records below
    were skipped for good."""
    _fill(pipeline)
    group = pipeline.settings.consumer_group("dlq-replay-enrichment-all")
    topic = pipeline["enrichment.dlq"]
    places = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    stale = Consumer({"bootstrap.servers": pipeline.bootstrap, "group.id": group})
    stale.commit(
        offsets=[TopicPartition(topic, p, 500) for p in range(PARTITIONS)], asynchronous=False
    )

    def saved() -> list[int]:
        return [tp.offset for tp in stale.committed(places, timeout=30)]

    try:
        assert claimx(pipeline, "replay", "enrichment", "--dry-run").exit_code == 0
        assert saved() == [500] * PARTITIONS  # a dry run changes nothing
        result = claimx(pipeline, "replay", "enrichment", "--max", "1", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["replayed"] == 1
        assert all(offset < 500 for offset in saved())
    finally:
        stale.close()
