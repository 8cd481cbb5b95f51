"""`claimx recovery reset` against what it must not take at its word: a partition the broker
answers for with an error (no leader for a time look-up, a commit refused for one partition),
and snapshot rows Bytewax no longer loads (a backup interval keeps them) past a recreated
topic's end, which must not keep the stage refusing after the reset moved the rows it loads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.startup import recovery_state
from claimx_flow.startup.recovery import init_recovery, kafka_cluster_id
from claimx_flow.startup.recovery_state import check_recovery_identity, read_recovery
from tests.isolation import isolated_settings
from tests.procedures.test_recovery_identity import events, messages, recreate, run_ingest
from tests.procedures.test_recovery_retry import Claimx, entry_point, one_line


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)


@pytest.fixture
def claimx(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Claimx:
    return entry_point(settings, tmp_path, monkeypatch, capsys)


def two_per_partition(settings: Settings) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for i in range(4):
        producer.produce(settings.claimx_events_topic, key=b"k", value=b"v", partition=i % 2)
    assert producer.flush(30) == 0


def group(settings: Settings) -> dict[int, int]:
    from tests.procedures.test_recovery_identity import committed

    return committed(settings, settings.consumer_group("ingester"), settings.claimx_events_topic)


def refused(error: int) -> Callable[[TopicPartition], TopicPartition]:
    """A partition of a Kafka answer as it comes when it carries ``error`` (offset -1)."""

    class Refused(TopicPartition):  # type: ignore[misc]
        @property
        def error(self) -> KafkaError:
            return KafkaError(error)

    return lambda tp: Refused(tp.topic, tp.partition, -1)


class PartitionOneWithoutLeader(Consumer):  # type: ignore[misc]
    """The broker's own answer to a time look-up, but partition 1's as it comes while that
    partition has no leader: offset -1 and an error. A one-broker cluster cannot have one
    partition leaderless while it answers for another, hence the stand-in."""

    def offsets_for_times(self, partitions: Any, *args: Any, **kwargs: Any) -> Any:
        found = super().offsets_for_times(partitions, *args, **kwargs)
        leaderless = refused(KafkaError.LEADER_NOT_AVAILABLE)
        return [leaderless(tp) if tp.partition == 1 else tp for tp in found]

    def get_watermark_offsets(self, partition: Any, *args: Any, **kwargs: Any) -> Any:
        plain = TopicPartition(partition.topic, partition.partition)  # the client's own type
        return super().get_watermark_offsets(plain, *args, **kwargs)


class PartitionOneRefused(Consumer):  # type: ignore[misc]
    """Commits as the broker does, but answers for partition 1 as a broker whose ACLs deny the
    topic does: the request succeeds, that partition's answer carries the error and its offset
    is not moved. The test broker has no ACLs, hence the stand-in."""

    def commit(self, *args: Any, offsets: Any = None, **kwargs: Any) -> Any:
        kept = [tp for tp in offsets if tp.partition != 1]
        answered = super().commit(*args, offsets=kept, **kwargs)
        denied = refused(KafkaError.TOPIC_AUTHORIZATION_FAILED)
        return [*answered, *(denied(tp) for tp in offsets if tp.partition == 1)]


def test_a_partition_without_a_leader_is_an_error_not_a_jump_to_its_end(
    settings: Settings, claimx: Claimx, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_per_partition(settings)
    init_recovery(settings, "ingest", kafka_cluster_id(settings))
    monkeypatch.setattr(recovery_state, "Consumer", PartitionOneWithoutLeader)
    before = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    for extra in (["--dry-run"], ["--yes"]):
        code, _, err = claimx("recovery", "reset", "ingest", "--to-datetime", before, *extra)
        assert code == 2, err  # was: 0, partition 1 planned and moved to its end (2)
        line = one_line(err)
        assert f"{settings.claimx_events_topic}[1]" in line and "leader" in line.lower()
    assert group(settings) == {}  # nothing moved


def test_a_partition_the_group_refused_is_reported_not_taken_as_moved(
    settings: Settings, claimx: Claimx, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_per_partition(settings)
    init_recovery(settings, "ingest", kafka_cluster_id(settings))
    monkeypatch.setattr(recovery_state, "Consumer", PartitionOneRefused)
    code, out, err = claimx("recovery", "reset", "ingest", "--to-latest", "--yes")
    assert code == 2, out  # was: 0, with partition 1 shown at 2 but never committed
    line = one_line(err)
    assert f"refused the new offsets of {settings.claimx_events_topic}[1] (" in line
    assert f"{settings.claimx_events_topic}[0]" not in line
    assert "authoriz" in line.lower()
    assert group(settings) == {0: 2}


def test_rows_bytewax_no_longer_loads_do_not_keep_a_reset_stage_refusing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A backup interval keeps the rows of earlier epochs (garbage collection lags): here the
    first run's, whose offsets lie past the recreated topic's end like the loaded ones."""
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        claimx_stop_at_end=True,
        claimx_backup_interval_seconds=300,
    )
    topic, pending = settings.claimx_events_topic, settings.claimx_enrichment_pending_topic
    produce_lines(events(40, seed=7), topic, settings)
    assert run_ingest(settings, tmp_path / "logs-1")[0] == 0
    produce_lines(events(40, seed=8), topic, settings)
    assert run_ingest(settings, tmp_path / "logs-2")[0] == 0
    data = read_recovery(settings.recovery_dir("ingest"))
    epochs = {r.epoch for r in data.snapshots if r.input_positions([topic])}
    assert len(epochs) >= 2, epochs  # the first run's rows are still there

    recreate(settings, topic)
    produce_lines(events(2, seed=9), topic, settings)
    recovery_state.reset_positions(settings, "ingest", "earliest", assume_stopped=True)
    check_recovery_identity(settings, "ingest")  # was: "a recovery snapshot of offset 2x …"
    assert messages(settings, pending) == 80
