"""Messages a stage's earlier run already routed, read past at a start rather than routed again.

A stage sends a failed message's copy to its retry tier or DLQ in the epoch that read it. A
crash before that epoch's snapshot makes the next start read the message again, and without
this it would route it a second time (a second copy, a second attempt), or, if the cause has
gone meanwhile, process it: its rows or file land while its first copy sits in a DLQ. Either
breaks the law's "exactly one".

So a copy that is its message's whole outcome names where the message was read
(``READ_AT_HEADER``). At a start, the stage reads the topics it routes to (its tiers and DLQ;
for the retry stage, the pending topics and DLQs it releases to) over the earlier run's span:
from the oldest snapshot its published positions come from (``claimx_flow.kafka.positions``),
less ``CLOCK_MARGIN_S``, to past the newest. A copy that names one of its input partitions marks
a message the input reads past (``sent_before`` of ``KafkaInput`` and ``DueTimeInput``), should
it read it again. Tasks a step held in its recovery state (enrich's reads, downloads in flight)
are checked the same way (``sent``).

A success can be a whole outcome too: the download's cached message (``StageSpec.outcome``).
Run again, its task could meet a source gone since and dead-letter a file the upload stage
stored from the first message. Its topic carries every success, not a few failures, so it is
read only from the newest snapshot, less ``OUTCOME_MARGIN_S``: whatever a restart reads again
was read, and so finished, after that.

A media file's DLQ copy has a failed result beside it in ``claimx.downloads.results``, sent just
before it to another topic: a crash between their two confirmations can keep the copy and lose
the result. So a media stage's start reads the results topic over the same span too, and sends
the failed result again for each DLQ copy it believes (below) that has none there (the results
stage counts a file once).

It can miss, never lose: a message is read past only because its own copy is in Kafka. A copy only
names a position, and anything can be written to a route topic (a foreign producer, a topic deleted
and made again, its offsets from 0), so before believing one the start reads the message it names
(a second read, with a ``SCAN_LIMIT_S`` of its own) and compares keys (``identity``; for a message
without one, its value): the copy's own, or, if the copy's was cut to fit, the sha256 it gives of
the whole one. What it misses (no published time yet, which only a start whose own publishing
failed leaves: ``Progress.start`` waits for it before reading; a read cut at ``SCAN_LIMIT_S``; a
copy older than the margin; a copy stamped by a host whose clock is more than the margin behind; an
outcome of a resume older than the newest snapshot; a copy naming a message that cannot be read
again; a resume from a recovery backup older than the published position) is routed again, as
before this existed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from claimx_flow import catalog
from claimx_flow.catalog import StageSpec
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import client_config, produce_or_wait, producer_config, settled
from claimx_flow.kafka.positions import REFRESH_S, CommittedPosition, committed_positions
from claimx_flow.kafka.records import KafkaRecord, raw_headers
from claimx_flow.kafka.topics import ADMIN_TIMEOUT_S, watermarks
from claimx_flow.kafka.unreadable import lost_offset
from claimx_flow.models import (
    CachedDownload,
    DownloadTask,
    FailureInfo,
    MalformedHeadersError,
    MalformedMessageError,
    UploadResult,
)
from claimx_flow.models.messages import DownloadFields
from claimx_flow.routing.failures import (
    ORIGINAL_KEY_SHA256_HEADER,
    ORIGINAL_SHA256_HEADER,
    READ_AT_HEADER,
    failed_result,
    read_position,
)

log = logging.getLogger(__name__)

CLOCK_MARGIN_S = 60.0
"""Copies are stamped by the producing host's clock, snapshots by the stage's: the same host,
or hosts kept within this of each other."""
OUTCOME_MARGIN_S = 10.0
"""An outcome (the download's cached message) comes after the snapshot a restart resumes from:
its task was read later, or was in flight then. The stage's own processes stamp both, so this
is all the margin their clocks need, and the read stays short at any rate."""
SCAN_LIMIT_S = 60.0
"""The longest a start spends reading its tiers, DLQ and outcomes (after a long stop, the
tiers and DLQ hold every other stage's copies since), and again reading the messages their
copies name."""

SEEK_GAP = 1000
"""Messages between two a start must read again beyond which it seeks rather than reads on."""

Position = tuple[str, int]
Keys = frozenset[str]
"""The identities (``identity``) a copy accepts for the message it names."""
MEDIA_MODELS: dict[str, type[DownloadFields]] = {"download": DownloadTask, "upload": CachedDownload}
"""What a media stage reads, and so what its DLQ copies hold."""


class LedgerError(ClaimxError):
    """Failed results to send again that Kafka did not confirm: the start fails, as it would
    on any Kafka outage, and the next one sends them."""


@dataclass(frozen=True)
class FailedResults:
    """Where a media stage's failed results go, and what its DLQ copies hold."""

    topic: str
    model: type[DownloadFields]
    producer: Mapping[str, Any]


@dataclass(frozen=True)
class _DeadCopy:
    at: Position
    offset: int
    keys: Keys
    value: bytes | None
    info: FailureInfo | None


@dataclass
class _Scan:
    copies: dict[Position, dict[int, Keys]] = field(default_factory=dict)
    """Per input partition, the offsets copies name, with the keys they accept."""
    read: dict[Position, dict[int, str]] = field(default_factory=dict)
    """The identity of each of those messages, read again (``RoutedLedger._read_again``)."""
    dead: list[_DeadCopy] = field(default_factory=list)
    failed_media: set[str] = field(default_factory=set)

    def believed(self, at: Position, offset: int, keys: Keys) -> bool:
        """Whether the message at ``offset`` was read again and has one of ``keys``."""
        found = self.read.get(at, {}).get(offset)
        return found is not None and found in keys


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
        dlq: str | None = None,
        results: FailedResults | None = None,
        outcomes: list[str] | None = None,
        scan_limit_s: float = SCAN_LIMIT_S,
    ) -> None:
        self._client = dict(client)
        self._group_id = group_id
        self._inputs = inputs
        self._routes = routes
        self._outcomes = outcomes or []
        self._dlq = dlq
        self._results = results
        self._scan_limit_s = scan_limit_s
        self._lock = threading.Lock()
        self._found: dict[Position, frozenset[int]] | None = None

    @classmethod
    def for_stage(cls, settings: Settings, spec: StageSpec) -> RoutedLedger | None:
        """The ledger of a stage that routes failures (None for one that does not)."""
        routes = [*catalog.ladder_topics(settings, spec.ladder)] if spec.ladder else []
        dlq = catalog.topic_name(settings, spec.dlq) if spec.dlq is not None else None
        if dlq is not None:
            routes.append(dlq)
        if not routes:
            return None
        model = MEDIA_MODELS.get(spec.name)
        return cls(
            client_config(settings),
            settings.consumer_group(spec.consumer),
            catalog.input_topics(settings, spec),
            routes,
            dlq=dlq,
            results=FailedResults(
                settings.claimx_downloads_results_topic, model, producer_config(settings)
            )
            if model is not None
            else None,
            outcomes=[catalog.topic_name(settings, spec.outcome)] if spec.outcome else None,
        )

    def __call__(self, topic: str, partition: int) -> frozenset[int]:
        """The offsets of ``topic[partition]`` an earlier run already routed (or, for the
        download, downloaded)."""
        return self._read().get((topic, partition), frozenset())

    def sent(self, record: KafkaRecord) -> bool:
        """Whether ``record``'s copy is already in a tier or the DLQ, or its outcome in its
        topic (cheap once read: a stage asks for every task it resumes)."""
        found = self._found if self._found is not None else self._read()
        offsets = found.get((record.topic, record.partition)) if found else None
        return offsets is not None and record.offset in offsets

    def _read(self) -> dict[Position, frozenset[int]]:
        with self._lock:
            if self._found is None:
                started = time.monotonic()
                scan = self._scan()
                self._send_missing_results(scan)
                self._found = {
                    at: frozenset(
                        offset for offset, keys in copies.items() if scan.believed(at, offset, keys)
                    )
                    for at, copies in scan.copies.items()
                }
                if self._found:
                    log.info(
                        "%d message(s) already routed or done by an earlier run, found in "
                        "%.1fs; they are read past, not routed or done again",
                        sum(len(offsets) for offsets in self._found.values()),
                        time.monotonic() - started,
                    )
            return self._found

    def _send_missing_results(self, scan: _Scan) -> None:
        """The failed result of each DLQ copy read past whose result is not in Kafka."""
        if self._results is None or not scan.dead:
            return
        missing: list[UploadResult] = []
        for dead in scan.dead:
            if not scan.believed(dead.at, dead.offset, dead.keys):  # not a copy of its message
                continue
            try:
                media = self._results.model.from_json(dead.value)
            except MalformedMessageError:  # no file named: it never had a result
                continue
            if media.media_id in scan.failed_media:
                continue
            info = dead.info
            reason = info.error_message if info is not None else "dead-lettered"
            at = info.last_failed_at if info is not None else None
            result = failed_result(media, reason, finished_at=at)
            if result is not None:
                missing.append(result)
        if not missing:
            return
        producer = Producer(dict(self._results.producer))
        refused: list[str] = []

        def delivered(error: KafkaError | None, _: object) -> None:
            if error is not None:
                refused.append(error.str())

        for result in missing:
            produce_or_wait(
                producer,
                self._results.topic,
                key=result.kafka_key,
                value=result.to_json(),
                on_delivery=delivered,
            )
        left = producer.flush(SCAN_LIMIT_S)
        if left or refused:
            raise LedgerError(
                f"{len(missing)} failed result(s) to send again, "
                f"not confirmed by Kafka: {refused[0] if refused else f'{left} unconfirmed'}"
            )
        log.info("%d failed result(s) sent again, for files already dead-lettered", len(missing))

    def _scan(self) -> _Scan:
        consumer = Consumer(
            {
                **self._client,
                "group.id": self._group_id,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            inputs = {(t, p) for t in self._inputs for p in self._partitions(consumer, t)}
            published = self._published(consumer, inputs)
            times = [p.snapshot_at for p in published.values() if p.snapshot_at is not None]
            if not times:
                return _Scan()
            since_ms = int((min(times) - CLOCK_MARGIN_S) * 1000)
            outcomes_since_ms = int((max(times) - OUTCOME_MARGIN_S) * 1000)
            until_ms = int((max(times) + REFRESH_S + 2 * CLOCK_MARGIN_S) * 1000)
            scan = self._copies(consumer, since_ms, outcomes_since_ms, until_ms, frozenset(inputs))
            scan.read = self._read_again(consumer, scan.copies)
            return scan
        except (KafkaException, ClaimxError) as exc:  # not worth a start: copies come twice
            log.warning("earlier routings not read (%s); they may be routed again", exc)
            return _Scan()
        finally:
            consumer.close()

    def _published(
        self, consumer: Consumer, inputs: set[Position]
    ) -> dict[Position, CommittedPosition]:
        published: dict[Position, CommittedPosition] = {}
        for topic in self._inputs:
            partitions = sorted(p for t, p in inputs if t == topic)
            for partition, position in committed_positions(consumer, topic, partitions).items():
                published[(topic, partition)] = position
        return published

    def _copies(
        self,
        consumer: Consumer,
        since_ms: int,
        outcomes_since_ms: int,
        until_ms: int,
        inputs: frozenset[Position],
    ) -> _Scan:
        """The copies written from ``since_ms`` to ``until_ms``: the earlier run's span, from
        its oldest published snapshot to past its newest (it published at least every
        ``REFRESH_S`` while it ran), however long it has been stopped since; its outcomes only
        from ``outcomes_since_ms``, its newest snapshot."""
        topics = [*self._routes, *([self._results.topic] if self._results else [])]
        partitions = [(t, p) for t in topics for p in self._partitions(consumer, t)]
        outcomes = [(t, p) for t in self._outcomes for p in self._partitions(consumer, t)]
        scan = _Scan()
        if not partitions and not outcomes:
            return scan
        starts = {
            **(self._offsets_at(consumer, partitions, since_ms) if partitions else {}),
            **(self._offsets_at(consumer, outcomes, outcomes_since_ms) if outcomes else {}),
        }
        stops = self._offsets_at(consumer, [*partitions, *outcomes], until_ms)
        ends: dict[Position, int] = {}
        for position, start in starts.items():
            if start < 0:  # nothing written since
                continue
            _, high = watermarks(consumer, TopicPartition(*position))
            stop = stops.get(position, -1)
            end = min(high, stop) if stop >= 0 else high
            if start < end:
                ends[position] = end
        if not ends:
            return scan
        walk = _Walk(consumer, {at: starts[at] for at in ends})
        for at, offset, msg in walk.read(time.monotonic() + self._scan_limit_s):
            last = ends[at]
            if offset < last and msg is not None:
                self._note(scan, msg, inputs)
            if offset >= last - 1:
                walk.close(at)  # its span read (anything past it came in the same fetch)
        if walk.left:
            log.warning(
                "earlier routings not all read within %.0fs (%s left); those may be routed again",
                self._scan_limit_s,
                ", ".join(f"{t}[{p}]" for t, p in walk.left),
            )
        return scan

    def _note(self, scan: _Scan, msg: Message, inputs: frozenset[Position]) -> None:
        """What one message read tells: a copy read past, or a file's failed result."""
        headers = raw_headers(msg) or []
        if self._results is not None and msg.topic() == self._results.topic:
            try:
                result = UploadResult.from_json(msg.value())
            except MalformedMessageError:
                return
            if result.status == "failed":
                scan.failed_media.add(result.media_id)
            return
        position = _read_at(headers)
        if position is None:
            return
        topic, partition, read = position
        if (topic, partition) not in inputs or read < 0:  # names none of the stage's messages
            return
        keys = _copy_identities(msg.key(), msg.value(), headers)
        found = scan.copies.setdefault((topic, partition), {})
        found[read] = found.get(read, frozenset()) | keys
        if msg.topic() == self._dlq:
            dead = _DeadCopy((topic, partition), read, keys, msg.value(), _failure(headers))
            scan.dead.append(dead)

    def _read_again(
        self, consumer: Consumer, copies: dict[Position, dict[int, Keys]]
    ) -> dict[Position, dict[int, str]]:
        """The identity (``identity``) of each message ``copies`` name, read again (any offset:
        a task a step held in its recovery state lies below the published position). One the
        client cannot give, or no longer there, is left out: its copy is not believed."""
        read: dict[Position, dict[int, str]] = {}
        ahead: dict[Position, list[int]] = {}
        for (topic, partition), offsets in copies.items():
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            there = sorted(o for o in offsets if low <= o < high)
            if there:
                ahead[(topic, partition)] = there
        if not ahead:
            return read
        walk = _Walk(consumer, {at: wanted[0] for at, wanted in ahead.items()})
        for at, offset, msg in walk.read(time.monotonic() + self._scan_limit_s):
            wanted = ahead[at]
            while wanted and wanted[0] < offset:  # gone (compacted): not believed
                wanted.pop(0)
            if wanted and wanted[0] == offset:
                if msg is not None:
                    read.setdefault(at, {})[offset] = identity(msg.key(), msg.value())
                wanted.pop(0)
            if not wanted:
                walk.close(at)
            elif msg is None or wanted[0] - offset > SEEK_GAP:
                walk.seek(at, wanted[0])
        if walk.left:
            log.warning(
                "routed messages not all read again within %.0fs (%s left); "
                "those may be routed again",
                self._scan_limit_s,
                ", ".join(f"{t}[{p}]" for t, p in walk.left),
            )
        return read

    @staticmethod
    def _offsets_at(
        consumer: Consumer, partitions: list[Position], at_ms: int
    ) -> dict[Position, int]:
        """Per partition, the first offset written at or after ``at_ms`` (-1: none)."""
        found = settled(
            lambda: consumer.offsets_for_times(
                [TopicPartition(t, p, at_ms) for t, p in partitions], timeout=ADMIN_TIMEOUT_S
            ),
            what="find the copies routed since the last snapshot",
            timeout_s=ADMIN_TIMEOUT_S,
        )
        return {(tp.topic, tp.partition): tp.offset for tp in found}

    @staticmethod
    def _partitions(consumer: Consumer, topic: str) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=ADMIN_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        return sorted(metadata.partitions)


class _Walk:
    """Partitions read from given offsets on, in offset order each, stepping past a message the
    client cannot give (``claimx_flow.kafka.unreadable``), which librdkafka would otherwise
    fetch again and again."""

    def __init__(self, consumer: Consumer, starts: Mapping[Position, int]) -> None:
        self._consumer = consumer
        self._next = dict(starts)  # per partition, the first offset not yet read or passed
        self._moved: set[Position] = set()
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])

    @property
    def left(self) -> list[Position]:
        return sorted(self._next)

    def close(self, at: Position) -> None:
        self._next.pop(at, None)

    def seek(self, at: Position, offset: int) -> None:
        """Read ``at`` from ``offset`` on; what this fetch still holds from before is dropped."""
        self._next[at] = offset
        self._moved.add(at)
        try:
            self._consumer.seek(TopicPartition(at[0], at[1], offset))
        except KafkaException as exc:  # a partition the client is stopping: nothing to read
            log.debug("%s[%d]: seek refused: %s", at[0], at[1], exc)
            self.close(at)

    def read(self, deadline: float) -> Iterator[tuple[Position, int, Message | None]]:
        """Each message read (None: one the client cannot give, already stepped past) until
        every partition is closed (its end closes it) or ``deadline``."""
        while self._next and time.monotonic() < deadline:
            self._moved.clear()
            for msg in self._consumer.consume(1000, 0.5):
                number, offset = msg.partition(), msg.offset()
                at = (str(msg.topic()), number if number is not None else -1)
                if at not in self._next or at in self._moved:  # closed, or fetched before a seek
                    continue
                error = msg.error()
                if error is None:
                    if offset is not None:
                        self._next[at] = offset + 1
                        yield at, offset, msg
                elif error.code() == KafkaError._PARTITION_EOF:
                    self.close(at)
                else:
                    lost = lost_offset(msg, error, self._next[at])
                    if lost is not None:  # else about the fetch: it clears
                        self.seek(at, lost + 1)
                        yield at, lost, None


def identity(key: bytes | None, value: bytes | None) -> str:
    """What a copy and the message it names must share: the key, or, for a message without
    one (raw events may come keyless), its value, which the stages routing keyless messages
    (ingest, the retry stage) keep whole in the copy."""
    if key is not None:
        return _sha256(key)
    return "null" if value is None else "value:" + _sha256(value)


def _copy_identities(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> Keys:
    """The identities a copy accepts: its own, or the whole key's or value's it states when
    that was cut to fit (every such header: a replayed copy may carry an earlier one too)."""
    stated = ORIGINAL_KEY_SHA256_HEADER if key is not None else ORIGINAL_SHA256_HEADER
    wholes = [v.decode("ascii", "replace") for n, v in headers if n == stated and v is not None]
    return frozenset(
        {identity(key, value), *(w if key is not None else "value:" + w for w in wholes)}
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_at(headers: list[tuple[str, bytes | None]]) -> tuple[str, int, int] | None:
    for name, value in headers:
        if name == READ_AT_HEADER:
            return read_position(value if isinstance(value, bytes) else None)
    return None


def _failure(headers: list[tuple[str, bytes | None]]) -> FailureInfo | None:
    try:
        return FailureInfo.maybe_from_headers(headers)
    except MalformedHeadersError:
        return None
