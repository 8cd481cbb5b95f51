"""Messages a stage's earlier run already routed, read past at a start rather than routed again.

A stage sends a failed message's copy to its retry tier or DLQ in the epoch that read it. A
crash before that epoch's snapshot makes the next start read the message again, and without
this it would route it a second time (a second copy, a second attempt), or, if the cause has
gone meanwhile, process it: its rows or file land while its first copy sits in a DLQ. Either
breaks the law's "exactly one".

So a copy that is its message's whole outcome names where the message was read
(``READ_AT_HEADER``). At a start, the stage reads its tiers and DLQ from the time of the oldest
snapshot its published positions come from (``claimx_flow.kafka.positions``), less
``CLOCK_MARGIN_S``, to their ends as they are then. A copy that names one of its input
partitions marks a message the input reads past (``KafkaInput(sent_before=…)``), should it read
it again. Tasks a step held in its recovery state (downloads in flight) are checked the same
way (``sent``).

It can miss, never lose: a message is read past only because its own copy is in Kafka. What it
misses (no published time yet, a scan cut at ``SCAN_LIMIT_S``, a copy older than the margin)
is routed again, as before this existed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from claimx_flow import catalog
from claimx_flow.catalog import StageSpec
from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config, settled
from claimx_flow.kafka.positions import CommittedPosition, committed_positions
from claimx_flow.kafka.records import KafkaRecord, raw_headers
from claimx_flow.kafka.topics import ADMIN_TIMEOUT_S, watermarks
from claimx_flow.routing.failures import READ_AT_HEADER, read_position

log = logging.getLogger(__name__)

CLOCK_MARGIN_S = 60.0
"""Copies are stamped by the producing host's clock, snapshots by the stage's: the same host,
or hosts kept within this of each other."""
SCAN_LIMIT_S = 60.0
"""The longest a start spends reading its tiers and DLQ (after a long stop, they hold every
other stage's copies since)."""

Position = tuple[str, int]


class RoutedLedger:
    """What one start of a stage reads past: per input partition, the offsets already routed.

    Read once per process, on first use (the first input partition built), and shared by its
    workers."""

    def __init__(
        self,
        client: Mapping[str, Any],
        group_id: str,
        inputs: list[str],
        routes: list[str],
        *,
        scan_limit_s: float = SCAN_LIMIT_S,
    ) -> None:
        self._client = dict(client)
        self._group_id = group_id
        self._inputs = inputs
        self._routes = routes
        self._scan_limit_s = scan_limit_s
        self._lock = threading.Lock()
        self._found: dict[Position, frozenset[int]] | None = None

    @classmethod
    def for_stage(cls, settings: Settings, spec: StageSpec) -> RoutedLedger | None:
        """The ledger of a stage that routes failures (None for one that does not)."""
        routes = [*catalog.ladder_topics(settings, spec.ladder)] if spec.ladder else []
        if spec.dlq is not None:
            routes.append(catalog.topic_name(settings, spec.dlq))
        if not routes:
            return None
        return cls(
            client_config(settings),
            settings.consumer_group(spec.consumer),
            catalog.input_topics(settings, spec),
            routes,
        )

    def __call__(self, topic: str, partition: int) -> frozenset[int]:
        """The offsets of ``topic[partition]`` already routed by an earlier run."""
        return self._read().get((topic, partition), frozenset())

    def sent(self, record: KafkaRecord) -> bool:
        """Whether ``record``'s copy is already in a tier or the DLQ."""
        return record.offset in self(record.topic, record.partition)

    def _read(self) -> dict[Position, frozenset[int]]:
        with self._lock:
            if self._found is None:
                started = time.monotonic()
                self._found = self._scan()
                if self._found:
                    log.info(
                        "%d message(s) already routed by an earlier run, found in %.1fs; "
                        "they are read past, not routed again",
                        sum(len(offsets) for offsets in self._found.values()),
                        time.monotonic() - started,
                    )
            return self._found

    def _scan(self) -> dict[Position, frozenset[int]]:
        consumer = Consumer(
            {
                **self._client,
                "group.id": self._group_id,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            published = self._published(consumer)
            times = [p.snapshot_at for p in published.values() if p.snapshot_at is not None]
            if not times:
                return {}
            since_ms = int((min(times) - CLOCK_MARGIN_S) * 1000)
            return self._copies(consumer, since_ms)
        except KafkaException as exc:  # never worth a start: without it, copies come twice
            log.warning("earlier routings not read (%s); they may be routed again", exc)
            return {}
        finally:
            consumer.close()

    def _published(self, consumer: Consumer) -> dict[Position, CommittedPosition]:
        published: dict[Position, CommittedPosition] = {}
        for topic in self._inputs:
            for partition, position in committed_positions(
                consumer, topic, self._partitions(consumer, topic)
            ).items():
                published[(topic, partition)] = position
        return published

    def _copies(self, consumer: Consumer, since_ms: int) -> dict[Position, frozenset[int]]:
        wanted = [
            TopicPartition(topic, partition, since_ms)
            for topic in self._routes
            for partition in self._partitions(consumer, topic)
        ]
        starts = settled(
            lambda: consumer.offsets_for_times(wanted, timeout=ADMIN_TIMEOUT_S),
            what="find the copies routed since the last snapshot",
            timeout_s=ADMIN_TIMEOUT_S,
        )
        ends: dict[Position, int] = {}
        for start in starts:
            if start.offset < 0:  # nothing written since
                continue
            _, high = watermarks(consumer, TopicPartition(start.topic, start.partition))
            if start.offset < high:
                ends[(start.topic, start.partition)] = high
        if not ends:
            return {}
        consumer.assign([s for s in starts if (s.topic, s.partition) in ends])
        found: dict[Position, set[int]] = {}
        deadline = time.monotonic() + self._scan_limit_s
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                at = (str(msg.topic()), int(msg.partition() or 0))
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(at, None)
                    continue
                offset = msg.offset()
                if at in ends and offset is not None and offset >= ends[at] - 1:
                    del ends[at]
                position = _read_at(msg)
                if position is None:
                    continue
                topic, partition, read = position
                if topic not in self._inputs:
                    continue
                found.setdefault((topic, partition), set()).add(read)
        if ends:
            log.warning(
                "earlier routings not all read within %.0fs (%s left); those may be routed again",
                self._scan_limit_s,
                ", ".join(f"{t}[{p}]" for t, p in sorted(ends)),
            )
        return {position: frozenset(offsets) for position, offsets in found.items()}

    @staticmethod
    def _partitions(consumer: Consumer, topic: str) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        return sorted(metadata.partitions)


def _read_at(msg: Any) -> tuple[str, int, int] | None:
    for name, value in raw_headers(msg) or ():
        if name == READ_AT_HEADER:
            return read_position(value if isinstance(value, bytes) else None)
    return None
