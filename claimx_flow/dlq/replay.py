"""Replay: DLQ records back to a pending topic, exactly once per session, with a loop guard.

Each chunk of replayed messages and the session's new offsets are written in one Kafka
transaction (``send_offsets_to_transaction``): either both become visible or neither does. A run
that dies between Kafka confirming the messages and the commit leaves an open transaction; the
next run of the same session fences it (same ``transactional.id``), Kafka aborts it, and
read-committed consumers (every stage) never see those copies. The run then resends the chunk
from the last committed offsets, so each record reaches its pending topic once.

With ``--no-transactions`` (clusters without transactions, such as Azure Event Hubs Standard)
the offsets are committed right after Kafka confirms each chunk: a crash between the two resends
that one chunk, which the pipeline's idempotent sinks absorb. Ctrl-C is no crash: the sends
queued so far are confirmed and committed before the run ends (``ReplayRun._stop``).

A message is parked, not replayed, when it has already been replayed ``max_replays`` times: it
stays in the DLQ and is listed (the first ``LEFT_SHOWN``, and how many), so a message that can
never succeed does not loop forever; ``force.force_command`` says how to send them anyway. A
truncated copy (``claimx.truncated``: the original did not fit the DLQ) is left and listed the
same way: its cut value would only fail again, and its original size and sha256 tell an
operator what to fetch from the source.

A replayed task (enrichment or download DLQ) starts counting again in its body too: its
``retry_count`` goes back to 0 with the ``claimx.attempt`` header, and so does a download's
``refresh_count``, the rest of the message byte for byte (``for_attempt``). Raw events (events
DLQ) are sent exactly as they were.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.dlq import clients
from claimx_flow.dlq.clients import DlqError, kafka_reason
from claimx_flow.dlq.filters import ReplayFilter
from claimx_flow.dlq.left import LeftRecords
from claimx_flow.dlq.queues import DlqName, dlq_topic, replay_target
from claimx_flow.dlq.reader import DeadLetter, RawHeaders, read_range
from claimx_flow.dlq.session import session_group, session_name, session_starts, transactional_id
from claimx_flow.kafka.clients import produce_or_wait
from claimx_flow.models import HEADER_PREFIX, FailureInfo, replace_failure_headers, utc_now
from claimx_flow.models.messages import for_attempt
from claimx_flow.models.types import MAX_INT64
from claimx_flow.routing.failures import READ_AT_HEADER

REPLAYED_AT_HEADER = "claimx.replayed_at"
REPLAYED_FROM_HEADER = "claimx.replayed_from"
# A replay restarts the count: the stage records the message's next failure as attempt 1, so
# it climbs the retry tiers from the first again. A task's body says the same (retry_count).
REPLAYED_ATTEMPT = 0
COMMIT_EVERY_S = 5.0

Progress = Callable[[int, int], None]
"""Told (records read so far, records this run reads at most) after each record."""


@dataclass(frozen=True)
class ReplayOptions:
    selection: ReplayFilter = field(default_factory=ReplayFilter)
    to_topic: str | None = None
    max_messages: int | None = None
    rate_per_s: float | None = None
    dry_run: bool = False
    max_replays: int = 3
    session: str | None = None
    chunk_size: int = 200
    # Off only for clusters without transactions (Azure Event Hubs Standard): progress is then
    # committed after each confirmed chunk, and a crash in between resends that one chunk.
    transactional: bool = True


@dataclass
class Tally:
    """What a run did (or, dry, would do); merged into the outcome only once Kafka has it."""

    replayed: int = 0
    skipped: int = 0
    parked: LeftRecords = field(default_factory=LeftRecords)
    truncated: LeftRecords = field(default_factory=LeftRecords)
    by_target: Counter[str] = field(default_factory=Counter)
    by_category: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.replayed += other.replayed
        self.skipped += other.skipped
        self.parked.merge(other.parked)
        self.truncated.merge(other.truncated)
        self.by_target.update(other.by_target)
        self.by_category.update(other.by_category)
        self.by_error.update(other.by_error)


@dataclass
class ReplayOutcome:
    dlq: DlqName
    topic: str
    session: str
    group: str
    dry_run: bool
    starts: dict[int, int]
    ends: dict[int, int]
    done: Tally = field(default_factory=Tally)
    committed: dict[int, int] = field(default_factory=dict)  # the session's offsets after
    stopped_at_max: bool = False
    interrupted: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def to_scan(self) -> int:
        return sum(self.ends[p] - self.starts[p] for p in self.starts)


def replayed_headers(letter: DeadLetter, at: datetime) -> RawHeaders:
    """The record's headers with the attempt count restarted, one more replay, and a replay mark.

    An envelope that cannot be read is dropped: the stage then starts a fresh one.
    """
    # The read that routed it: this copy will be read elsewhere, and routed anew if it fails.
    marks = {REPLAYED_AT_HEADER, REPLAYED_FROM_HEADER, READ_AT_HEADER}
    kept = [(name, value) for name, value in letter.headers if name not in marks]
    added: RawHeaders = [
        (REPLAYED_AT_HEADER, at.isoformat().encode()),
        (REPLAYED_FROM_HEADER, letter.position.encode()),
    ]
    if letter.failure is None:
        return [*[(n, v) for n, v in kept if not _envelope_header(n)], *added]
    info = letter.failure.model_copy(
        update={
            "attempt": REPLAYED_ATTEMPT,
            "replay_count": min(letter.failure.replay_count + 1, MAX_INT64),
            "due_at": None,
        }
    )
    return [*replace_failure_headers(kept, info), *added]


def replayed_value(dlq: DlqName, value: bytes | None) -> bytes | None:
    """The value a replay sends: a task's with ``retry_count`` restarted, a raw event's as is."""
    if dlq is DlqName.EVENTS:
        return value
    return for_attempt(value, REPLAYED_ATTEMPT)


def _envelope_header(name: str) -> bool:
    return name.startswith(HEADER_PREFIX) and name[len(HEADER_PREFIX) :] in FailureInfo.model_fields


def error_label(letter: DeadLetter) -> str:
    if letter.failure is None:
        return f"(no failure headers{': ' + letter.failure_error if letter.failure_error else ''})"
    return f"{letter.failure.error_class}: {letter.failure.error_message}"


class _Pace:
    """At most ``rate`` sends a second, evenly spaced (a token bucket with a burst of one)."""

    def __init__(self, rate_per_s: float | None) -> None:
        self._interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next, now) + self._interval


class ReplayRun:
    """One run over a DLQ, from the session's offsets to the high watermarks seen at the start."""

    def __init__(
        self, settings: Settings, dlq: DlqName, options: ReplayOptions, timeout_s: float
    ) -> None:
        self.settings = settings
        self.dlq = dlq
        self.options = options
        self.timeout_s = timeout_s
        self._chunk = Tally()
        self._positions: dict[int, int] = {}
        self._failed: list[str] = []
        self._topics: dict[str, Any] = {}
        self._last_commit = time.monotonic()
        self._producer: Producer | None = None
        self._pace = _Pace(options.rate_per_s)
        self._txn_open = False
        self._unsaved = 0  # records read since the last commit

    def run(self, progress: Progress | None = None) -> ReplayOutcome:
        topic = dlq_topic(self.settings, self.dlq)
        name = session_name(self.options.selection, self.options.to_topic, self.options.session)
        group = session_group(self.settings, self.dlq, name)
        consumer = clients.reader(self.settings, group)
        try:
            # Metadata is read once, up front: asked for while partitions are being fetched, it
            # waits behind the broker's fetch long-polls.
            self._topics = clients.cluster_topics(self.settings, consumer, self.timeout_s)
            partitions = clients.partitions_of(self.settings, self._topics, topic)
            bounds = clients.watermarks(self.settings, consumer, topic, partitions, self.timeout_s)
            if self.options.to_topic:
                self._require_topic(self.options.to_topic)
            if not self.options.dry_run:
                self._producer = self._start_producer(transactional_id(group))
            begun = session_starts(
                self.settings,
                consumer,
                group,
                topic,
                bounds,
                self.timeout_s,
                persist=not self.options.dry_run,
            )
            starts, ends = self.options.selection.narrowed(
                begun.starts, {p: high for p, (_, high) in bounds.items()}
            )
            outcome = ReplayOutcome(
                self.dlq, topic, name, group, self.options.dry_run, starts, ends
            )
            outcome.warnings = begun.warnings
            outcome.committed.update(begun.starts)
            self._loop(consumer, outcome, progress)
            return outcome
        finally:
            consumer.close()
            if self._producer is not None:
                self._producer.close()
                self._producer = None

    def _loop(self, consumer: Consumer, outcome: ReplayOutcome, progress: Progress | None) -> None:
        with _Interrupts() as interrupts:
            self._run_loop(consumer, outcome, progress, interrupts)

    def _run_loop(
        self,
        consumer: Consumer,
        outcome: ReplayOutcome,
        progress: Progress | None,
        interrupts: _Interrupts,
    ) -> None:
        scanned = 0
        try:
            letters = read_range(
                consumer, outcome.topic, outcome.starts, outcome.ends, interrupts.check
            )
            for letter in letters:
                self._step(letter)
                interrupts.check()  # between records: a send and its position go together
                scanned += 1
                if progress is not None:
                    progress(scanned, outcome.to_scan)
                if self._at_max(outcome):
                    outcome.stopped_at_max = True
                    break
                if self._chunk_full(scanned):
                    self._commit(consumer, outcome)
            self._commit(consumer, outcome)
        except KeyboardInterrupt:
            outcome.interrupted = True
            self._stop(consumer, outcome)
        except (DlqError, KafkaException) as exc:
            self._abort()
            raise DlqError(
                f"replay stopped, the unconfirmed chunk was rolled back "
                f"({outcome.done.replayed} replayed and committed before; run the same command "
                f"again to continue): {kafka_reason(self.settings, exc)}"
            ) from None

    def _step(self, letter: DeadLetter) -> None:
        self._take(letter)
        # Only once the record is dealt with (its send queued): a stop commits what is read.
        self._positions[letter.partition] = letter.offset + 1
        self._unsaved += 1

    def _take(self, letter: DeadLetter) -> None:
        if not self.options.selection.matches(letter):
            self._chunk.skipped += 1
            return
        if letter.replay_count >= self.options.max_replays:
            self._chunk.parked.add(letter)
            return
        if letter.truncated:
            self._chunk.truncated.add(letter)
            return
        target = self.options.to_topic or replay_target(self.settings, self.dlq, letter.failure)
        self._require_topic(target)  # a dry run says so too, rather than promise a send
        if self._producer is not None:
            self._send(self._producer, target, letter)
        self._chunk.replayed += 1
        self._chunk.by_target[target] += 1
        category = letter.failure.error_category.value if letter.failure else "unknown"
        self._chunk.by_category[category] += 1
        self._chunk.by_error[error_label(letter)] += 1

    def _send(self, producer: Producer, target: str, letter: DeadLetter) -> None:
        self._pace.wait()
        self._open_transaction(producer)
        headers: list[tuple[str, str | bytes | None]] = [*replayed_headers(letter, utc_now())]

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                self._failed.append(f"{letter.position} → {target}: {error}")

        produce_or_wait(
            producer,
            target,
            value=replayed_value(self.dlq, letter.value),
            key=letter.key,
            headers=headers,
            on_delivery=delivered,
        )
        producer.poll(0)

    def _at_max(self, outcome: ReplayOutcome) -> bool:
        limit = self.options.max_messages
        return limit is not None and outcome.done.replayed + self._chunk.replayed >= limit

    def _chunk_full(self, scanned: int) -> bool:
        return (
            scanned % self.options.chunk_size == 0
            or time.monotonic() - self._last_commit > COMMIT_EVERY_S
        )

    def _commit(self, consumer: Consumer, outcome: ReplayOutcome) -> None:
        """Confirm every send of the chunk, then make it and the new offsets visible at once."""
        if self._producer is not None and self._unsaved:
            self._confirm_deliveries(self._producer)
            self._commit_progress(self._producer, consumer, outcome.topic)
            outcome.committed.update(self._positions)
        outcome.done.add(self._chunk)
        self._chunk = Tally()
        self._unsaved = 0
        self._last_commit = time.monotonic()

    def _confirm_deliveries(self, producer: Producer) -> None:
        unconfirmed = producer.flush(self.timeout_s)
        if unconfirmed:
            raise DlqError(f"Kafka did not confirm {unconfirmed} replayed message(s)")
        if self._failed:
            raise DlqError(f"Kafka refused {len(self._failed)} message(s): {self._failed[0]}")

    def _commit_progress(self, producer: Producer, consumer: Consumer, topic: str) -> None:
        offsets = [TopicPartition(topic, p, o) for p, o in sorted(self._positions.items())]
        if not self.options.transactional:  # the sends are confirmed; a crash now resends them
            stored = consumer.commit(offsets=offsets, asynchronous=False) or []
            refused = [tp for tp in stored if tp.error is not None]
            if refused:
                raise DlqError(f"Kafka did not store the replay progress: {refused[0].error}")
            return
        self._open_transaction(producer)
        producer.send_offsets_to_transaction(
            offsets, consumer.consumer_group_metadata(), self.timeout_s
        )
        producer.commit_transaction(self.timeout_s)
        self._txn_open = False

    def _open_transaction(self, producer: Producer) -> None:
        if self.options.transactional and not self._txn_open:
            producer.begin_transaction()
            self._txn_open = True

    def _stop(self, consumer: Consumer, outcome: ReplayOutcome) -> None:
        """After Ctrl-C: a transaction's chunk is rolled back (sent again next run, unseen this
        time). Without transactions nothing can take a send back, and closing the producer
        would deliver what it holds, so every send queued is confirmed and committed with its
        offsets: the next run starts after them instead of sending them again."""
        if self.options.transactional:
            self._abort()
            return
        try:
            self._commit(consumer, outcome)
        except (DlqError, KafkaException) as exc:
            self._abort()
            raise DlqError(
                f"replay interrupted, and its last chunk not confirmed: run the same command "
                f"again (it may send that chunk again): {kafka_reason(self.settings, exc)}"
            ) from None

    def _abort(self) -> None:
        self._chunk = Tally()
        if self._producer is not None and not self.options.transactional:
            # Not sent yet, so not sent at all: the next run sends them from the last commit.
            self._producer.purge(in_queue=True, in_flight=False)
        if self._producer is None or not self._txn_open:
            return
        self._txn_open = False
        # If this fails the coordinator aborts the chunk anyway when the next run fences us.
        with contextlib.suppress(KafkaException):
            self._producer.abort_transaction(self.timeout_s)

    def _start_producer(self, tx_id: str) -> Producer:
        if not self.options.transactional:
            return clients.checked_producer(self.settings)
        producer = clients.transactional_producer(self.settings, tx_id)
        try:
            producer.init_transactions(self.timeout_s)
        except KafkaException as exc:
            raise DlqError(
                f"cannot start a Kafka transaction for the replay; on a cluster without "
                f"transactions use --no-transactions: {kafka_reason(self.settings, exc)}"
            ) from None
        return producer

    def _require_topic(self, topic: str) -> None:
        clients.partitions_of(self.settings, self._topics, topic)


def replay(
    settings: Settings,
    dlq: DlqName,
    options: ReplayOptions,
    *,
    timeout_s: float = clients.DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
) -> ReplayOutcome:
    """Replay (or with ``dry_run`` only count) the DLQ's records selected by ``options``."""
    return ReplayRun(settings, dlq, options, timeout_s).run(progress)


class _Interrupts:
    """Ctrl-C taken as a request, acted on between records. Raised where it lands, it could
    fall after a record's send is queued and before its position is recorded: the stop would
    confirm the send but not commit past it, and the next run would send it again. A second
    Ctrl-C while the stop confirms what was sent is absorbed (the stop is bounded by the
    Kafka timeout). Only the main thread can take signals; elsewhere nothing changes."""

    def __init__(self) -> None:
        self.asked = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _ask(self, _signal: int, _frame: object) -> None:
        self.asked = True

    def check(self) -> None:
        if self.asked:
            raise KeyboardInterrupt
