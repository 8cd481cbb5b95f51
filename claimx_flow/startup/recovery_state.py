"""A stage's recovery state on disk: where its Kafka inputs resume, shown, reset and checked.

Bytewax keeps each input's next offsets as snapshot rows (``step_id``, ``state_key``,
``ser_change`` pickled, ``snap_epoch``) in SQLite files (``part-*.sqlite3``) under the stage's
recovery directory, in one of two shapes:

- the Kafka input (``operators.kafka``): one row per topic partition, ``state_key`` =
  ``<partition>-<topic>``, an int;
- the retry stage's due-time input (``operators.due_time``): one row per topic (a tier),
  ``state_key`` = ``<topic>``, a dict of partition → offset.

A row keyed by an input topic in either way that holds anything else is refused by ``show``
and ``reset`` (``UnknownSnapshot``): a reset that moved only the consumer group would leave the
stage resuming from it. Two exceptions, both of steps keyed by source partition, not
positions: no state (None: the parts of ``operators.kafka``'s output laned by partition) and a
list (the in-flight items of ``operators.overlapped``, enrich). Showing the positions is the
equivalent of ``kafka-consumer-groups --describe``; rewriting them (with the stage stopped) is
the equivalent of ``--reset-offsets``.

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
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeGuard

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import client_config, settled
from claimx_flow.kafka.positions import REFRESH_S, group_offsets, snapshot_time
from claimx_flow.kafka.records import kafka_millis
from claimx_flow.kafka.topics import watermarks
from claimx_flow.routing.tiers import orphan_names
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
STOPPED_AFTER_S = 2 * REFRESH_S + 30.0
"""A group whose newest published position (``snapshot_at``) is younger than this may belong to
a running stage: a running stage publishes at least every ``REFRESH_S`` (plus an epoch or
two), wherever it runs; the rest is a margin for clocks."""
ASSUME_STOPPED_OPTION = "--assume-stopped"


class RecoveryStateError(ClaimxError):
    """Recovery state that cannot be read or changed as asked."""


class UnknownSnapshot(RecoveryStateError):
    """A snapshot row of an input whose shape is not one this module knows how to read."""


@dataclass(frozen=True)
class InputPosition:
    """Where one input partition of a stage resumes."""

    step_id: str
    topic: str
    partition: int
    offset: int
    epoch: int
    file: Path
    state_key: str = ""
    """The row it is in: ``<partition>-<topic>`` (that partition's), or ``<topic>`` (a row of
    every partition of the topic)."""


def _is_offset(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SnapshotRow:
    step_id: str
    state_key: str
    epoch: int
    blob: bytes | None
    file: Path

    def input_positions(self, topics: Collection[str]) -> list[InputPosition]:
        """This row's input positions when it is an input's row (see the module's docstring);
        [] for any other row; ``UnknownSnapshot`` for a row keyed by one of ``topics`` that
        holds an unknown shape."""
        match = _KEY.match(self.state_key)
        if self.state_key in topics:
            value = self._value()
            if isinstance(value, dict) and all(
                _is_offset(p) and _is_offset(o) for p, o in value.items()
            ):
                return [self._position(self.state_key, p, o) for p, o in sorted(value.items())]
        elif match is not None and match.group(2) in topics:
            value = self._value()
            if _is_offset(value):
                return [self._position(match.group(2), int(match.group(1)), value)]
            if isinstance(value, list):  # a step's items keyed by source partition
                return []
        else:
            return []
        if value is None:  # no state (discarded, or a sink part's: keyed by source partition)
            return []
        raise UnknownSnapshot(
            f"the recovery snapshot of {self.step_id} for {self.state_key} (epoch "
            f"{self.epoch}, in {self.file}) holds {_described(value)}, not a shape of input "
            "position known here; refusing to guess where the stage resumes from"
        )

    def input_position(self) -> InputPosition | None:
        """This row as a Kafka input partition's position (``<partition>-<topic>``: an int),
        whatever the topic, or None; ``input_positions`` reads every shape of input row."""
        match = _KEY.match(self.state_key)
        value = self._value() if match is not None else None
        if match is None or not _is_offset(value):
            return None
        return self._position(match.group(2), int(match.group(1)), value)

    def _value(self) -> object:
        if self.blob is None:
            return None
        try:
            return pickle.loads(self.blob)
        except Exception as exc:  # any class or data pickle cannot rebuild here
            return _Unreadable(f"{type(exc).__name__}: {exc}")

    def _position(self, topic: str, partition: int, offset: int) -> InputPosition:
        return InputPosition(
            self.step_id, topic, partition, offset, self.epoch, self.file, self.state_key
        )


@dataclass(frozen=True)
class _Unreadable:
    reason: str


def _described(value: object) -> str:
    if isinstance(value, _Unreadable):
        return f"what cannot be unpickled ({value.reason})"
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'…' if len(text) > 60 else ''})"


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

    def live(self, epoch: int) -> list[SnapshotRow]:
        """The rows a resume at ``epoch`` loads or a later one may: all but those older than
        the row loaded for their key (Bytewax never loads them again; garbage collection
        removes them in its time)."""
        loaded = self.loaded(epoch)
        return [
            row
            for row in self.snapshots
            if (found := loaded.get((row.step_id, row.state_key))) is None
            or row.epoch >= found.epoch
        ]

    def input_topics(self, settings: Settings, stage: str) -> list[str]:
        """The topics whose rows are the stage's input positions: its inputs, and for the
        retry stage the orphan tiers its snapshots name (tiers it drained)."""
        spec = catalog.stage(stage)
        names = catalog.input_topics(settings, spec)
        if spec.releases:
            keys = {row.state_key for row in self.snapshots}
            names += [tier.topic for tier in orphan_names(settings, keys)]
        return names


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
    return _positions(data, data.check_resumable(), data.input_topics(settings, stage))


def _positions(data: RecoveryData, epoch: int, topics: Collection[str]) -> list[InputPosition]:
    """The positions of the rows Bytewax loads at ``epoch``; ``UnknownSnapshot`` for an input
    row of a shape not known here."""
    positions = [p for row in data.loaded(epoch).values() for p in row.input_positions(topics)]
    return sorted(positions, key=lambda p: (p.topic, p.partition, p.step_id))


def check_stopped(
    settings: Settings,
    stage: str,
    files: list[Path],
    partitions: list[tuple[str, int]],
    *,
    assume_stopped: bool = False,
    now: float | None = None,
) -> None:
    """Refuse a reset while the stage may be running, here or elsewhere.

    A process on this machine holding its recovery files is running it (always refused). The
    stages' consumers never join their group (they assign partitions), so a stage running on
    another machine shows only in what it publishes: each position carries its snapshot's time
    (``snapshot_at``), refreshed at least every ``REFRESH_S``; a newer one than
    ``STOPPED_AFTER_S`` ago says it may still be running, and its next publish would undo the
    reset. So does a process here that runs Bytewax and whose open files cannot be read. Those
    two are refused unless ``assume_stopped`` (``--assume-stopped``: a stage stopped moments
    ago).
    """
    holders = processes_holding(files)
    if holders:
        raise RecoveryStateError(
            f"{stage} is running (pid {', '.join(map(str, holders))}); stop it before a reset"
        )
    if assume_stopped:
        return
    hidden = unreadable_bytewax_processes()
    if hidden:
        raise RecoveryStateError(
            f"{stage} may be running here: process(es) {', '.join(map(str, hidden))} run Bytewax "
            "but their open files cannot be read by this user, so whether they hold its recovery "
            f"files is unknown; stop the stage, run this as their user, or pass "
            f"{ASSUME_STOPPED_OPTION} if it is stopped"
        )
    group = settings.consumer_group(catalog.stage(stage).consumer)
    published = last_published(settings, group, partitions)
    now = time.time() if now is None else now
    if published is not None and now - published < STOPPED_AFTER_S:
        at = datetime.fromtimestamp(published, UTC).isoformat(timespec="seconds")
        until = datetime.fromtimestamp(published + STOPPED_AFTER_S, UTC)
        raise RecoveryStateError(
            f"{stage} seems to be running: its group {group} published at {at} "
            f"({max(now - published, 0):.0f}s ago; a running stage publishes at least every "
            f"{REFRESH_S:.0f}s, wherever it runs), and would overwrite the reset; stop it "
            f"everywhere (in Kubernetes: scale it to 0), then run the reset after "
            f"{until.isoformat(timespec='seconds')}, or now with {ASSUME_STOPPED_OPTION}"
        )


def last_published(
    settings: Settings, group: str, partitions: list[tuple[str, int]]
) -> float | None:
    """The newest snapshot time (``snapshot_at``) among the group's positions of
    ``partitions``; None when none carries one."""
    if not partitions:
        return None
    consumer = Consumer({**client_config(settings), "group.id": group})
    wanted = [TopicPartition(t, p) for t, p in partitions]
    try:
        found = settled(  # a busy group coordinator answers "not yet" for a while
            lambda: consumer.committed(wanted, timeout=TIMEOUT_S),
            what=f"read the offsets committed by {group}",
            timeout_s=TIMEOUT_S,
            error=RecoveryStateError,
        )
    finally:
        consumer.close()
    failed = _refused(found)
    if failed:  # unread, the stage's last publish is unknown: it may be running
        raise RecoveryStateError(
            f"cannot tell whether the stage is running: {group}'s offsets of {failed} could "
            "not be read"
        )
    times = [snapshot_time(tp.metadata) for tp in found]
    return max((t for t in times if t is not None), default=None)


def reset_positions(
    settings: Settings,
    stage: str,
    target: Target,
    *,
    assume_stopped: bool = False,
    group_only: bool = False,
) -> list[InputPosition]:
    """Point every input partition of a stopped stage at ``target``; returns the new positions.

    Both places a stage resumes from move: the snapshot each partition resumes from (the very
    rows Bytewax loads) and its consumer group's committed offsets (what a start without a
    snapshot resumes from). Snapshot rows of the inputs at or after the resume epoch, left by
    an execution that was killed before it recorded them as done, are removed: Bytewax never
    loads them, and they must not surface in a later resume. The recovery directory is then
    recorded as belonging to the topics as they are now. Downstream state (batches in
    flight, tallies) is left as it is; the sinks are idempotent, so events read again are
    written again harmlessly.

    Refused while the stage may be running (``check_stopped``; ``assume_stopped`` lifts what
    is only a guess), and when an input's snapshot has a shape not known here
    (``UnknownSnapshot``): nothing is changed then. ``group_only``: the group alone, whatever
    recovery files are here (a stage whose files are on its pods' volumes).
    """
    directory = recovery_directory(settings, stage)
    files = [] if group_only else partition_files(directory)
    holders = processes_holding(files)
    if holders:
        raise RecoveryStateError(
            f"{stage} is running (pid {', '.join(map(str, holders))}); stop it before a reset"
        )
    data = read_recovery(directory) if files else None
    epoch = data.check_resumable() if data else 1
    names = data.input_topics(settings, stage) if data else []
    positions = _positions(data, epoch, names) if data else []
    topics = describe_input_topics(settings, stage, TIMEOUT_S, also=names)
    current = [(t.name, p) for t in topics.values() for p in t.partitions]
    check_stopped(settings, stage, files, current, assume_stopped=assume_stopped)
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
    """Point each snapshotted input row at its new offsets, and drop the input snapshots of
    ``epoch`` and later (see ``reset_positions``); the positions as they now are.

    A partition's row (``<partition>-<topic>``) becomes its partition's new offset; a topic's
    row (``<topic>``, the due-time input) becomes the new offset of every partition the topic
    has now. A row whose partition or topic is gone is left: there is nothing to point at."""
    rows: dict[tuple[Path, str, str, int], list[InputPosition]] = defaultdict(list)
    for position in positions:
        rows[(position.file, position.step_id, position.state_key, position.epoch)].append(position)
    updated: list[InputPosition] = []
    for (path, step_id, key, row_epoch), held in rows.items():
        topic = held[0].topic
        value: int | dict[int, int]
        if key == topic:
            value = {p: o for (t, p), o in sorted(offsets.items()) if t == topic}
            if not value:
                continue
            moved = [
                InputPosition(step_id, topic, p, o, row_epoch, path, key) for p, o in value.items()
            ]
        else:
            (position,) = held
            offset = offsets.get((topic, position.partition))
            if offset is None:
                continue
            value, moved = offset, [replace(position, offset=offset)]
        with closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "UPDATE snaps SET ser_change = ? WHERE step_id = ? AND state_key = ? "
                "AND snap_epoch = ?",
                (pickle.dumps(value), step_id, key, row_epoch),
            )
        for other in files:
            with closing(sqlite3.connect(other)) as db, db:
                db.execute(
                    "DELETE FROM snaps WHERE step_id = ? AND state_key = ? AND snap_epoch >= ?",
                    (step_id, key, epoch),
                )
        updated += moved
    return updated


def check_recovery_identity(settings: Settings, stage: str, *, in_use: bool = True) -> None:
    """Refuse offsets that belong to another cluster or to another incarnation of a topic.

    Checked before a stage starts: the Kafka cluster id and each input topic's id against
    those recorded in the recovery directory, and every offset the stage could resume from
    (any snapshot row of an input partition, the consumer group's committed offset) against
    the partition's end: an offset beyond the end means a recreated (or truncated) topic, where
    resuming would silently skip messages. The first start that finds Bytewax's partitions in
    the directory records the cluster and the topic ids. ``in_use=False``: the process runs
    without recovery (``process_recovery_directory``), so only the group's offsets concern it;
    a directory left here by other runs is neither read nor recorded.
    """
    if not in_use:
        topics = describe_input_topics(settings, stage, TIMEOUT_S)
        nothing = RecoveryData(recovery_directory(settings, stage), [])
        _check_offsets_within_ends(settings, stage, nothing, topics.values())
        return
    directory = recovery_directory(settings, stage)
    cluster = kafka_cluster_id(settings)
    check_recovery_cluster(settings, stage, cluster)
    data = read_recovery(directory)
    topics = describe_input_topics(
        settings, stage, TIMEOUT_S, also=data.input_topics(settings, stage)
    )
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
    _check_offsets_within_ends(settings, stage, data, topics.values())
    if partition_files(directory):
        record_identity(settings, stage, cluster, topics.values(), replace=False)


def _check_offsets_within_ends(
    settings: Settings, stage: str, data: RecoveryData, topics: Iterable[TopicState]
) -> None:
    """Every offset the stage could resume from within its partition's end: the snapshot rows
    Bytewax loads now or may load later (``RecoveryData.live``; a reset rewrites exactly
    those), and the group's. A row of a shape not known here is not Bytewax's to refuse; the
    stage reads it as its source does."""
    topics = list(topics)
    partitions = [(t.name, p) for t in topics for p in t.partitions]
    if not partitions:
        return
    names = {t.name for t in topics}
    snapshots: dict[tuple[str, int], int] = {}
    for row in data.live(data.resume_epoch()):
        try:
            found = row.input_positions(names)
        except UnknownSnapshot:
            continue
        for position in found:
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


def group_positions(
    settings: Settings, stage: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Where the stage's consumer group has each input partition: what a start without a
    recovery snapshot resumes from."""
    return _committed(settings, settings.consumer_group(catalog.stage(stage).consumer), partitions)


def _committed(
    settings: Settings, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    consumer = Consumer({**client_config(settings), "group.id": group})
    try:
        return group_offsets(consumer, group, partitions, TIMEOUT_S)
    finally:
        consumer.close()


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
        answered = consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=False,
        )
    except KafkaException as exc:
        raise RecoveryStateError(f"{stage}: cannot move the offsets of {group}: {exc}") from None
    finally:
        consumer.close()
    refused = _refused(answered or [])
    if refused:  # the request went through, but these partitions kept their old offsets
        raise RecoveryStateError(f"{stage}: {group} refused the new offsets of {refused}")


def _refused(answered: Iterable[TopicPartition]) -> str:
    """The partitions of a Kafka answer that carry an error, with it ("" when none do)."""
    return ", ".join(
        f"{tp.topic}[{tp.partition}] ({tp.error.str()})" for tp in answered if tp.error is not None
    )


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
                if tp.error is not None:  # e.g. no leader now: its offset says nothing
                    raise RecoveryStateError(
                        f"cannot find the offset of {tp.topic}[{tp.partition}] at "
                        f"{target.isoformat()}: {tp.error.str()}"
                    )
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


def unreadable_bytewax_processes() -> list[int]:
    """Processes on this machine that run Bytewax (by their command line) but whose open files
    this user cannot list: ``processes_holding`` cannot tell whether they run the stage."""
    hidden = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            next(iter((proc / "fd").iterdir()), None)
            continue
        except FileNotFoundError:  # gone meanwhile
            continue
        except OSError:
            pass
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"bytewax" in command:
            hidden.append(int(proc.name))
    return hidden


def processes_holding(files: list[Path]) -> list[int]:
    """Processes on this machine with one of ``files`` open (a running stage); those whose
    open files cannot be read are ``unreadable_bytewax_processes``'s to judge."""
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
