"""A stage's recovery state on disk: where its Kafka inputs resume, shown, reset and checked.

Bytewax keeps each input partition's next offset as a snapshot row (``step_id``, ``state_key``
= ``<partition>-<topic>``, a pickled int, ``snap_epoch``) in SQLite files (``part-*.sqlite3``)
under the stage's recovery directory. Showing them is the equivalent of
``kafka-consumer-groups --describe``; rewriting them (with the stage stopped) is the equivalent
of ``--reset-offsets``.

Which rows a restart loads is Bytewax 0.21.1's rule, read here exactly as Bytewax computes it
(``src/recovery.rs``: ``RecoveryPart::resume_from`` and ``SerializedSnapshotLoader``; the same
SQL is in the installed ``bytewax/_bytewax*.so``), over the progress rows of *all* partitions:

- the last execution is ``MAX(ex_num)`` in ``exs``; each of its ``worker_count`` workers is at
  the highest ``worker_frontier`` it wrote to ``fronts`` for that execution, or at the
  execution's own ``resume_epoch`` when it wrote none;
- the **resume epoch** is the lowest of those (1 when no execution was recorded yet);
- per ``(step_id, state_key)`` Bytewax loads the snapshot with the highest ``snap_epoch``
  **below** (not at) the resume epoch;
- it refuses to resume when a partition is missing, or when a partition's ``commit_epoch``
  (garbage collection, which lags the frontier by the backup interval) is above the resume
  epoch.

``commits`` is not the resume point: after a SIGKILL, or with a backup interval, it lags the
frontier, and a snapshot chosen by it is one Bytewax does not load.
"""

from __future__ import annotations

import os
import pickle
import re
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import client_config, settled
from claimx_flow.kafka.records import kafka_millis
from claimx_flow.kafka.topics import watermarks
from claimx_flow.startup.recovery import (
    RecoveryMismatch,
    TopicState,
    check_recovery_cluster,
    describe_input_topics,
    kafka_cluster_id,
    record_identity,
    recorded_topic_ids,
    recovery_directory,
)

_KEY = re.compile(r"^(\d+)-(.+)$")
Target = Literal["earliest", "latest"] | datetime
TIMEOUT_S = 15.0


class RecoveryStateError(ClaimxError):
    """Recovery state that cannot be read or changed as asked."""


@dataclass(frozen=True)
class InputPosition:
    """Where one input partition of a stage resumes."""

    step_id: str
    topic: str
    partition: int
    offset: int
    epoch: int
    file: Path


@dataclass(frozen=True)
class SnapshotRow:
    step_id: str
    state_key: str
    epoch: int
    blob: bytes | None
    file: Path

    def input_position(self) -> InputPosition | None:
        """This row as a Kafka input's position, if it is one (``<partition>-<topic>``: int)."""
        match = _KEY.match(self.state_key)
        if match is None or self.blob is None:
            return None
        value = pickle.loads(self.blob)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        return InputPosition(
            self.step_id, match.group(2), int(match.group(1)), value, self.epoch, self.file
        )


@dataclass
class RecoveryData:
    """Every row Bytewax's resume calculation reads, from every partition file found."""

    directory: Path
    files: list[Path]
    part_counts: set[int] = field(default_factory=set)
    parts: set[int] = field(default_factory=set)
    executions: list[tuple[int, int, int]] = field(default_factory=list)  # ex, workers, resume
    frontiers: list[tuple[int, int, int]] = field(default_factory=list)  # ex, worker, frontier
    commits: dict[int, int] = field(default_factory=dict)  # part_index → commit_epoch
    snapshots: list[SnapshotRow] = field(default_factory=list)

    def missing_parts(self) -> list[int]:
        count = max(self.part_counts, default=0)
        return [i for i in range(count) if i not in self.parts]

    def resume_epoch(self) -> int:
        """Bytewax's resume epoch: the lowest frontier over the last execution's workers."""
        if not self.executions:
            return 1
        ex_num, workers, resumed_at = max(self.executions)
        reached = dict.fromkeys(range(workers), resumed_at)
        for ex, worker, frontier in self.frontiers:
            if ex == ex_num:
                reached[worker] = max(reached.get(worker, resumed_at), frontier)
        return min(reached.values())

    def check_resumable(self) -> int:
        """The resume epoch, or why Bytewax would refuse to resume from these files."""
        if len(self.part_counts) > 1:
            raise RecoveryStateError(
                f"{self.directory}: partitions of different counts {sorted(self.part_counts)}"
            )
        missing = self.missing_parts()
        if missing:
            raise RecoveryStateError(
                f"{self.directory} holds {len(self.parts)} of the "
                f"{max(self.part_counts)} recovery partitions (missing {missing}); the resume "
                "point is computed over all of them: run this where every partition file is"
            )
        epoch = self.resume_epoch()
        ahead = sorted(p for p, c in self.commits.items() if c > epoch)
        if ahead:
            raise RecoveryStateError(
                f"{self.directory}: partitions {ahead} were garbage-collected past the resume "
                f"epoch {epoch}; Bytewax refuses to resume from them"
            )
        return epoch

    def loaded(self, epoch: int) -> dict[tuple[str, str], SnapshotRow]:
        """Per (step_id, state_key), the snapshot Bytewax loads when resuming at ``epoch``."""
        latest: dict[tuple[str, str], SnapshotRow] = {}
        for row in self.snapshots:
            if row.epoch >= epoch:
                continue
            current = latest.get((row.step_id, row.state_key))
            if current is None or row.epoch > current.epoch:
                latest[(row.step_id, row.state_key)] = row
        return latest


def partition_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.sqlite3"))


def read_recovery(directory: Path, files: list[Path] | None = None) -> RecoveryData:
    """The progress and snapshot rows of ``files`` (by default every partition file there)."""
    data = RecoveryData(directory, partition_files(directory) if files is None else files)
    for path in data.files:
        try:
            with closing(sqlite3.connect(path)) as db:
                for index, count in db.execute("SELECT part_index, part_count FROM parts"):
                    data.parts.add(int(index))
                    data.part_counts.add(int(count))
                data.executions += db.execute(
                    "SELECT ex_num, worker_count, resume_epoch FROM exs"
                ).fetchall()
                data.frontiers += db.execute(
                    "SELECT ex_num, worker_index, worker_frontier FROM fronts"
                ).fetchall()
                data.commits.update(
                    db.execute("SELECT part_index, commit_epoch FROM commits").fetchall()
                )
                data.snapshots += [
                    SnapshotRow(step_id, key, epoch, blob, path)
                    for step_id, key, epoch, blob in db.execute(
                        "SELECT step_id, state_key, snap_epoch, ser_change FROM snaps"
                    )
                ]
        except sqlite3.Error as exc:
            raise RecoveryStateError(f"cannot read recovery partition {path}: {exc}") from None
    return data


def resume_epoch(files: list[Path]) -> int:
    """The epoch a resume starts from, by Bytewax's rule, over the given partition files."""
    return read_recovery(files[0].parent, files).resume_epoch() if files else 1


def input_positions(settings: Settings, stage: str) -> list[InputPosition]:
    """The offsets the stage's Kafka inputs resume from (their recovery snapshots), per topic
    partition; partitions without a snapshot resume from the consumer group instead."""
    directory = recovery_directory(settings, stage)
    data = read_recovery(directory)
    if not data.files:
        raise RecoveryStateError(f"{stage}: no recovery state in {directory}")
    return _positions(data, data.check_resumable())


def _positions(data: RecoveryData, epoch: int) -> list[InputPosition]:
    positions = [row.input_position() for row in data.loaded(epoch).values()]
    return sorted((p for p in positions if p is not None), key=lambda p: (p.topic, p.partition))


def reset_positions(settings: Settings, stage: str, target: Target) -> list[InputPosition]:
    """Point every input partition of a stopped stage at ``target``; returns the new positions.

    Both places a stage resumes from move: the snapshot each partition resumes from (the very
    rows Bytewax loads) and its consumer group's committed offsets (what a start without a
    snapshot resumes from). Snapshot rows of the inputs at or after the resume epoch, left by
    an execution that was killed before it recorded them as done, are removed: Bytewax never
    loads them, and they must not surface in a later resume. The recovery directory is then
    recorded as belonging to the topics as they are now. Downstream state (batches in
    flight, tallies) is left as it is; the sinks are idempotent, so events read again are
    written again harmlessly.
    """
    directory = recovery_directory(settings, stage)
    files = partition_files(directory)
    holders = processes_holding(files)
    if holders:
        raise RecoveryStateError(
            f"{stage} is running (pid {', '.join(map(str, holders))}); stop it before a reset"
        )
    data = read_recovery(directory) if files else None
    epoch = data.check_resumable() if data else 1
    positions = _positions(data, epoch) if data else []
    topics = describe_input_topics(settings, stage, TIMEOUT_S)
    current = [(t.name, p) for t in topics.values() for p in t.partitions]
    offsets = target_offsets(settings, current, target)
    try:
        updated = _move_snapshots(files, positions, offsets, epoch)
    except sqlite3.Error as exc:  # locked, read-only, damaged: some files may have moved
        raise RecoveryStateError(
            f"the recovery files of {stage} could not all be changed ({exc}); its consumer "
            "group was left as it was: put their backup back before the stage starts"
        ) from None
    try:
        _commit_group(settings, stage, offsets)
    except RecoveryStateError as exc:
        if not updated:
            raise
        raise RecoveryStateError(
            f"{exc}; the recovery files already point at the target, which is where the stage "
            "resumes from: run the reset again to move the group too"
        ) from None
    covered = {(p.topic, p.partition) for p in updated}
    updated += [
        InputPosition("-", topic, partition, offset, 0, directory)
        for (topic, partition), offset in sorted(offsets.items())
        if (topic, partition) not in covered
    ]
    if files:
        record_identity(settings, stage, kafka_cluster_id(settings), topics.values(), replace=True)
    return sorted(updated, key=lambda p: (p.topic, p.partition))


def _move_snapshots(
    files: list[Path],
    positions: list[InputPosition],
    offsets: Mapping[tuple[str, int], int],
    epoch: int,
) -> list[InputPosition]:
    """Point each snapshotted input position at its new offset, and drop the input snapshots
    of ``epoch`` and later (see ``reset_positions``); the positions as they now are."""
    updated: list[InputPosition] = []
    for position in positions:
        offset = offsets.get((position.topic, position.partition))
        if offset is None:  # a partition the topic no longer has: nothing to point at
            continue
        key = f"{position.partition}-{position.topic}"
        with closing(sqlite3.connect(position.file)) as db, db:
            db.execute(
                "UPDATE snaps SET ser_change = ? WHERE step_id = ? AND state_key = ? "
                "AND snap_epoch = ?",
                (pickle.dumps(offset), position.step_id, key, position.epoch),
            )
        for path in files:
            with closing(sqlite3.connect(path)) as db, db:
                db.execute(
                    "DELETE FROM snaps WHERE step_id = ? AND state_key = ? AND snap_epoch >= ?",
                    (position.step_id, key, epoch),
                )
        updated.append(
            InputPosition(
                position.step_id,
                position.topic,
                position.partition,
                offset,
                position.epoch,
                position.file,
            )
        )
    return updated


def check_recovery_identity(settings: Settings, stage: str) -> None:
    """Refuse offsets that belong to another cluster or to another incarnation of a topic.

    Checked before a stage starts: the Kafka cluster id and each input topic's id against
    those recorded in the recovery directory, and every offset the stage could resume from
    (any snapshot row of an input partition, the consumer group's committed offset) against
    the partition's end: an offset beyond the end means a recreated (or truncated) topic, where
    resuming would silently skip messages. The first start that finds Bytewax's partitions in
    the directory records the cluster and the topic ids.
    """
    directory = recovery_directory(settings, stage)
    cluster = kafka_cluster_id(settings)
    check_recovery_cluster(settings, stage, cluster)
    topics = describe_input_topics(settings, stage, TIMEOUT_S)
    recorded = recorded_topic_ids(settings, stage)
    for topic in topics.values():
        before = recorded.get(topic.name)
        if before is not None and before != topic.topic_id:
            raise RecoveryMismatch(
                f"{stage}: topic {topic.name} is not the one the recovery state in {directory} "
                f"was recorded against (topic id {before}, now {topic.topic_id}: deleted and "
                f"recreated?); resuming from its offsets would skip messages. With the stage "
                f"stopped, run `claimx recovery reset {stage} --to-earliest` (or "
                f"--to-datetime) to start over on the topic as it is now"
            )
    _check_offsets_within_ends(settings, stage, directory, topics.values())
    if partition_files(directory):
        record_identity(settings, stage, cluster, topics.values(), replace=False)


def _check_offsets_within_ends(
    settings: Settings, stage: str, directory: Path, topics: Iterable[TopicState]
) -> None:
    partitions = [(t.name, p) for t in topics for p in t.partitions]
    if not partitions:
        return
    snapshots: dict[tuple[str, int], int] = {}
    for row in read_recovery(directory).snapshots:
        position = row.input_position()
        if position is not None:
            key = (position.topic, position.partition)
            snapshots[key] = max(snapshots.get(key, 0), position.offset)
    group = settings.consumer_group(catalog.stage(stage).consumer)
    committed = _committed(settings, group, partitions)
    ends = _ends(settings, partitions)
    for topic, partition in partitions:
        end = ends[(topic, partition)]
        for where, offset in (
            ("a recovery snapshot of", snapshots.get((topic, partition))),
            (f"consumer group {group} has committed", committed.get((topic, partition))),
        ):
            if offset is not None and offset > end:
                raise RecoveryMismatch(
                    f"{stage}: {where} offset {offset:,} for topic {topic} partition "
                    f"{partition}, but the partition ends at {end:,}: the topic was recreated "
                    "(or truncated) since, and resuming would skip messages. With the stage "
                    f"stopped, run `claimx recovery reset {stage} --to-earliest` (or "
                    "--to-datetime) to start over on the topic as it is now"
                )


def _committed(
    settings: Settings, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    consumer = Consumer({**client_config(settings), "group.id": group})
    wanted = [TopicPartition(t, p) for t, p in partitions]
    try:
        found = settled(  # a busy group coordinator answers "not yet" for a while
            lambda: consumer.committed(wanted, timeout=TIMEOUT_S),
            what=f"read the offsets committed by {group}",
            timeout_s=TIMEOUT_S,
        )
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}


def _ends(settings: Settings, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    admin = AdminClient(client_config(settings))
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]

    def ends() -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            {TopicPartition(t, p): latest for t, p in partitions}, request_timeout=TIMEOUT_S
        )
        return {
            (tp.topic, tp.partition): int(future.result(timeout=TIMEOUT_S).offset)
            for tp, future in futures.items()
        }

    return settled(ends, what="read the end offsets of the input partitions", timeout_s=TIMEOUT_S)


def _commit_group(settings: Settings, stage: str, offsets: dict[tuple[str, int], int]) -> None:
    """Set the stage's consumer group to ``offsets`` (the stage must be stopped: a group with
    members refuses commits from outside)."""
    if not offsets:
        return
    group = settings.consumer_group(catalog.stage(stage).consumer)
    consumer = Consumer({**client_config(settings), "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )
    except KafkaException as exc:
        raise RecoveryStateError(f"{stage}: cannot move the offsets of {group}: {exc}") from None
    finally:
        consumer.close()


def target_offsets(
    settings: Settings, partitions: list[tuple[str, int]], target: Target
) -> dict[tuple[str, int], int]:
    """The offset each partition resumes from after a reset to ``target``."""
    consumer = Consumer({**client_config(settings), "group.id": "claimx-recovery-reset"})
    try:
        if isinstance(target, datetime):
            millis = kafka_millis(target)
            found = consumer.offsets_for_times(
                [TopicPartition(t, p, millis) for t, p in partitions], timeout=TIMEOUT_S
            )
            result = {}
            for tp in found:
                if tp.offset < 0:  # no message at or after the time: resume at the end
                    result[(tp.topic, tp.partition)] = watermarks(consumer, tp)[1]
                else:
                    result[(tp.topic, tp.partition)] = int(tp.offset)
            return result
        result = {}
        for topic, partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            result[(topic, partition)] = low if target == "earliest" else high
        return result
    except KafkaException as exc:
        raise RecoveryStateError(f"cannot read the offsets to reset to: {exc}") from None
    finally:
        consumer.close()


def processes_holding(files: list[Path]) -> list[int]:
    """Processes on this machine with one of ``files`` open (a running stage)."""
    wanted = {str(f.resolve()) for f in files}
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & wanted:
            holders.append(int(proc.name))
    return holders
