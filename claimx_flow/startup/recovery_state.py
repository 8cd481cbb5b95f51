"""A stage's recovery state on disk: where its Kafka inputs resume, shown and reset.

Bytewax keeps each input partition's next offset as a snapshot row (``step_id``, ``state_key``
= ``<partition>-<topic>``, a pickled int) in SQLite files under the stage's recovery
directory, and resumes from the snapshots of the last committed epoch. Showing them is the
equivalent of ``kafka-consumer-groups --describe``; rewriting them (with the stage stopped) is
the equivalent of ``--reset-offsets``.
"""

from __future__ import annotations

import os
import pickle
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import client_config

_KEY = re.compile(r"^(\d+)-(.+)$")
Target = Literal["earliest", "latest"] | datetime


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


def partition_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.sqlite3"))


def resume_epoch(files: list[Path]) -> int:
    """The epoch a resume starts from: the lowest committed epoch over all partitions."""
    epochs = []
    for path in files:
        with closing(sqlite3.connect(path)) as db:
            row = db.execute("SELECT MIN(commit_epoch) FROM commits").fetchone()
            epochs.append(row[0] if row and row[0] is not None else 0)
    return min(epochs, default=0)


def input_positions(settings: Settings, stage: str) -> list[InputPosition]:
    """The offsets the stage's Kafka inputs resume from, per topic partition."""
    directory = settings.recovery_dir(stage)
    files = partition_files(directory)
    if not files:
        raise RecoveryStateError(f"{stage}: no recovery state in {directory}")
    epoch = resume_epoch(files)
    latest: dict[tuple[str, str], InputPosition] = {}
    for path in files:
        for step_id, key, snap_epoch, blob in _snapshots(path, epoch):
            match = _KEY.match(key)
            if match is None or blob is None:
                continue
            value = pickle.loads(blob)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            current = latest.get((step_id, key))
            if current is None or snap_epoch > current.epoch:
                latest[(step_id, key)] = InputPosition(
                    step_id, match.group(2), int(match.group(1)), value, snap_epoch, path
                )
    return sorted(latest.values(), key=lambda p: (p.topic, p.partition))


def _snapshots(path: Path, epoch: int) -> Iterator[tuple[str, str, int, bytes | None]]:
    with closing(sqlite3.connect(path)) as db:
        yield from db.execute(
            "SELECT step_id, state_key, snap_epoch, ser_change FROM snaps WHERE snap_epoch <= ?",
            (epoch,),
        )


def reset_positions(settings: Settings, stage: str, target: Target) -> list[InputPosition]:
    """Point every input partition of a stopped stage at ``target``; returns the new positions.

    Both places a stage resumes from move: its recovery snapshots (when it has any) and its
    consumer group's committed offsets (what a start without a snapshot resumes from).
    Downstream state (batches in flight, tallies) is left as it is; the sinks are idempotent,
    so events read again are written again harmlessly.
    """
    directory = settings.recovery_dir(stage)
    files = partition_files(directory)
    holders = _processes_holding(files)
    if holders:
        raise RecoveryStateError(
            f"{stage} is running (pid {', '.join(map(str, holders))}); stop it before a reset"
        )
    positions = input_positions(settings, stage) if files else []
    partitions = [(p.topic, p.partition) for p in positions] or _input_partitions(settings, stage)
    offsets = _target_offsets(settings, partitions, target)
    _commit_group(settings, stage, offsets)
    if not positions:
        return [
            InputPosition("-", topic, partition, offset, 0, directory)
            for (topic, partition), offset in sorted(offsets.items())
        ]
    updated = []
    for position in positions:
        offset = offsets[(position.topic, position.partition)]
        with closing(sqlite3.connect(position.file)) as db, db:
            db.execute(
                "UPDATE snaps SET ser_change = ? WHERE step_id = ? AND state_key = ? "
                "AND snap_epoch = ?",
                (
                    pickle.dumps(offset),
                    position.step_id,
                    f"{position.partition}-{position.topic}",
                    position.epoch,
                ),
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


def _input_partitions(settings: Settings, stage: str) -> list[tuple[str, int]]:
    """Every partition of the stage's input topics, as the broker has them now."""
    topics = catalog.input_topics(settings, catalog.stage(stage))
    admin = AdminClient(client_config(settings))
    metadata = admin.list_topics(timeout=15)
    return [
        (topic, partition)
        for topic in topics
        if topic in metadata.topics
        for partition in sorted(metadata.topics[topic].partitions)
    ]


def _commit_group(settings: Settings, stage: str, offsets: dict[tuple[str, int], int]) -> None:
    """Set the stage's consumer group to ``offsets`` (the stage must be stopped: a group with
    members refuses commits from outside)."""
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


def _target_offsets(
    settings: Settings, partitions: list[tuple[str, int]], target: Target
) -> dict[tuple[str, int], int]:
    consumer = Consumer({**client_config(settings), "group.id": "claimx-recovery-reset"})
    try:
        if isinstance(target, datetime):
            millis = int(target.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(t, p, millis) for t, p in partitions], timeout=15
            )
            result = {}
            for tp in found:
                if tp.offset < 0:  # no message at or after the time: resume at the end
                    _, high = consumer.get_watermark_offsets(tp, timeout=15)
                    result[(tp.topic, tp.partition)] = int(high)
                else:
                    result[(tp.topic, tp.partition)] = int(tp.offset)
            return result
        result = {}
        for topic, partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            result[(topic, partition)] = int(low if target == "earliest" else high)
        return result
    finally:
        consumer.close()


def _processes_holding(files: list[Path]) -> list[int]:
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
