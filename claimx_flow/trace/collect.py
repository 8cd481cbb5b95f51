"""Gathering a trace: Delta first (it names the project and media of an event), then the Kafka
window, keyed topics only in the partitions their keys go to, then the rows the ids lead to."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.delta.tables import MEDIA
from claimx_flow.kafka.clients import producer_config
from claimx_flow.kafka.records import kafka_millis
from claimx_flow.models import utc_now
from claimx_flow.trace import scan
from claimx_flow.trace.model import Found, TableRow, Target, Trace, mentions, read_record
from claimx_flow.trace.partitioner import partition_for, partitioner_of
from claimx_flow.trace.roles import CONSUMER, DLQ_ROLES, RETRY_ROLES, TopicRole, topic_roles
from claimx_flow.trace.scan import KafkaWindow, Range, cap
from claimx_flow.trace.tables import entity_rows, first_rows, read_rows

WHOLE = DLQ_ROLES | RETRY_ROLES
"""Topics read whole whatever ``--limit`` says."""

Progress = Callable[[int], Callable[[int], None]]
"""Told how many messages a scan will read; returns what to call as it reads them."""


@dataclass(frozen=True)
class TraceOptions:
    since: datetime
    limit: int = 200_000
    """Messages read at most from the busy topics (raw, pending, cached, results); DLQs and
    retry tiers are read whole, since a copy there decides the verdict."""
    timeout_s: float = 10.0
    all_partitions: bool = False
    """Read every partition of keyed topics too (for messages a producer with another
    partitioner wrote)."""


@dataclass
class _Keys:
    """What the trace has learnt: the ids that say where to look next."""

    events: set[str]
    projects: set[str]
    media: set[str]
    event_types: set[str]

    def learn_row(self, row: TableRow) -> None:
        for column, bucket in (
            ("event_id", self.events),
            ("project_id", self.projects),
            ("media_id", self.media),
            ("event_type", self.event_types),
        ):
            value = row.text(column)
            if value:
                bucket.add(value)

    def learn(self, found: Found) -> None:
        ids = found.ids
        for value, bucket in (
            (ids.event_id, self.events),
            (ids.project_id, self.projects),
            (ids.media_id, self.media),
        ):
            if value:
                bucket.add(value)
        event_type = found.fields.get("event_type")
        if isinstance(event_type, str):
            self.event_types.add(event_type)


def trace(
    settings: Settings, target: Target, options: TraceOptions, progress: Progress | None = None
) -> Trace:
    result = Trace(target, options.since, utc_now(), limit=options.limit)
    keys = _Keys(set(), set(), set(), set())
    _seed(keys, target)
    events_rows = first_rows(settings, target, result.notes)
    for row in events_rows:
        keys.learn_row(row)
    if target.kind == "project":
        media_rows = read_rows(
            settings, MEDIA.name, [[("project_id", "=", target.id)]], result.notes
        )
        keys.media |= {m for r in media_rows if (m := r.text("media_id"))}
    with KafkaWindow(settings, options.timeout_s) as window:
        _Scanner(settings, window, target, options, result, progress).run(keys)
    event_ids = sorted(keys.events) if target.kind != "project" else []
    rows, result.evidence = entity_rows(
        settings, target, event_ids, sorted(keys.media), result.notes
    )
    result.rows = events_rows + rows
    result.records.sort(key=lambda f: f.sort_key)
    return result


def _seed(keys: _Keys, target: Target) -> None:
    known = {"event": keys.events, "project": keys.projects, "media": keys.media}
    known[target.kind].add(target.id)


class _Scanner:
    def __init__(
        self,
        settings: Settings,
        window: KafkaWindow,
        target: Target,
        options: TraceOptions,
        result: Trace,
        progress: Progress | None,
    ) -> None:
        self.settings = settings
        self.window = window
        self.target = target
        self.options = options
        self.result = result
        self.progress = progress
        self.partitioner = partitioner_of(producer_config(settings))
        self.roles = [r for r in topic_roles(settings, window.topics) if self._present(r)]
        self.done: set[tuple[str, int]] = set()
        self.since_ms = kafka_millis(options.since)
        self.budget = options.limit
        """What ``--limit`` still allows of the capped topics."""

    def _present(self, where: TopicRole) -> bool:
        if self.window.partitions(where.topic):
            return True
        self.result.notes.append(f"topic {where.topic} does not exist on the cluster")
        return False

    def run(self, keys: _Keys) -> None:
        self._scan(self._plan(keys, final=False), keys)
        self._scan(self._plan(keys, final=True), keys)
        self._mark_processed()

    def _plan(self, keys: _Keys, *, final: bool) -> list[tuple[TopicRole, list[int]]]:
        """Each topic and the partitions still to read in it. Before the final pass, keyed
        topics whose keys are not known yet wait (the raw events may name them)."""
        plan = []
        for where in self.roles:
            partitions = self._partitions(where, keys, final)
            if partitions is None:
                continue
            todo = [p for p in partitions if (where.topic, p) not in self.done]
            if todo:
                plan.append((where, todo))
        return plan

    def _partitions(self, where: TopicRole, keys: _Keys, final: bool) -> list[int] | None:
        every = self.window.partitions(where.topic)
        if where.key == "any" or self.options.all_partitions:
            return every
        if where.key == "media" and self._no_media_expected(keys):
            return None
        wanted = keys.projects if where.key == "project" else keys.media
        if not wanted:
            if not final:
                return None
            self._note_once(
                f"no {where.key} id known for {self.target}: read every partition of the "
                f"{where.key}-keyed topics"
            )
            return every
        chosen = {partition_for(k.encode(), len(every), self.partitioner) for k in wanted}
        if None in chosen:
            self._note_once(
                f"producer partitioner {self.partitioner!r} cannot be computed: "
                "read every partition of keyed topics"
            )
            return every
        return sorted(p for p in chosen if p is not None)

    def _no_media_expected(self, keys: _Keys) -> bool:
        """An event that is not a file event has no download to look for."""
        return (
            self.target.kind == "event"
            and not keys.media
            and bool(keys.event_types)
            and "PROJECT_FILE_ADDED" not in keys.event_types
        )

    def _note_once(self, note: str) -> None:
        if note not in self.result.notes:
            self.result.notes.append(note)

    def _scan(self, plan: Sequence[tuple[TopicRole, list[int]]], keys: _Keys) -> None:
        if not plan:
            return
        by_topic = {where.topic: where for where, _ in plan}
        ranges: list[Range] = []
        for where, partitions in plan:
            ranges += self.window.ranges(where.topic, partitions, self.since_ms)
            self.done |= {(where.topic, p) for p in partitions}
        ranges = self._capped(ranges, by_topic)
        total = sum(r.size for r in ranges)
        advance = self.progress(total) if self.progress and total else None
        needles = self._needles(keys)
        for message in self.window.read(ranges, advance or (lambda _: None)):
            self.result.scanned += 1
            if not mentions(message, needles):
                continue
            where = by_topic[message.topic() or ""]
            found = read_record(where, message)
            if self.target.matches(found.ids):
                self.result.records.append(found)
                keys.learn(found)
        if self.window.stalled:
            self.result.stalled += self.window.stalled
            self.result.notes.append(
                f"gave up on partitions that sent nothing for {scan.IDLE_TIMEOUT_S:g}s, "
                f"left partly unread: {', '.join(self.window.stalled)}"
            )

    def _capped(self, ranges: list[Range], by_topic: dict[str, TopicRole]) -> list[Range]:
        """DLQ and retry-tier ranges whole (few messages, and a copy there decides the
        verdict); the rest within what ``--limit`` still allows, newest kept."""
        whole = [r for r in ranges if by_topic[r.topic].role in WHOLE]
        busy, left_out = cap([r for r in ranges if r not in whole], self.budget)
        self.budget -= sum(r.size for r in busy)
        self.result.skipped += left_out
        return whole + busy

    def _needles(self, keys: _Keys) -> tuple[bytes, ...]:
        """Bytes every matching record must contain somewhere. A raw event's id may be derived
        (not in its bytes), so for an event its project id is the needle once known."""
        if self.target.kind != "event":
            return (self.target.id.encode(),)
        if keys.projects:
            return tuple(p.encode() for p in sorted(keys.projects))
        return ()

    def _mark_processed(self) -> None:
        """Whether the stage reading each found record has committed past it."""
        wanted: dict[tuple[str, str], set[int]] = defaultdict(set)
        for found in self.result.records:
            reader = CONSUMER.get(found.role)
            if reader is not None:
                wanted[(reader, found.topic)].add(found.partition)
        committed: dict[tuple[str, int], int] = {}
        for (reader_name, topic), partitions in wanted.items():
            group = self.settings.consumer_group(catalog.stage(reader_name).consumer)
            offsets = self.window.committed(group, topic, sorted(partitions))
            committed |= {(topic, partition): offset for partition, offset in offsets.items()}
        self.result.records = [
            replace(f, processed=_past(committed, f)) if f.role in CONSUMER else f
            for f in self.result.records
        ]


def _past(committed: dict[tuple[str, int], int], found: Found) -> bool | None:
    offset = committed.get((found.topic, found.partition))
    return None if offset is None else offset > found.offset
