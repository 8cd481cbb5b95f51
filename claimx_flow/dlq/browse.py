"""Looking into DLQs without changing them: a survey for ``list`` and a page for ``inspect``."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Consumer

from claimx_flow.config import Settings
from claimx_flow.dlq import clients
from claimx_flow.dlq.clients import DlqError
from claimx_flow.dlq.columns import ColumnTally
from claimx_flow.dlq.masking import masked_text
from claimx_flow.dlq.queues import DlqName, dlq_topic
from claimx_flow.dlq.reader import DeadLetter, read_range

Bounds = dict[int, tuple[int, int]]


@dataclass
class DlqSurvey:
    """One DLQ at a glance. Error counts cover the ``scanned`` newest records (all, if fewer);
    error messages are counted masked (``masking``)."""

    dlq: DlqName
    topic: str
    exists: bool
    partitions: int = 0
    messages: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    scanned: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    error_classes: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (class, message)
    columns: ColumnTally = field(default_factory=ColumnTally)

    def count(self, letter: DeadLetter) -> None:
        self.scanned += 1
        self.columns.count(letter)
        self.see_time(letter.timestamp)
        if letter.failure is None:
            self.categories["unknown"] += 1
            self.error_classes["(no failure headers)"] += 1
            self.errors["(no failure headers)", masked_text(letter.failure_error or "")] += 1
            return
        self.categories[letter.failure.error_category.value] += 1
        self.error_classes[letter.failure.error_class] += 1
        # URL queries masked: presigned URLs differing only in their signature are one error
        message = masked_text(letter.failure.error_message)
        self.errors[letter.failure.error_class, message] += 1

    def see_time(self, at: datetime | None) -> None:
        if at is None:
            return
        self.oldest = at if self.oldest is None else min(self.oldest, at)
        self.newest = at if self.newest is None else max(self.newest, at)


def survey(
    settings: Settings,
    dlqs: list[DlqName],
    scan_limit: int = 10_000,
    timeout_s: float = clients.DEFAULT_TIMEOUT_S,
) -> list[DlqSurvey]:
    """Counts (high minus low watermark), time span and top errors of each DLQ."""
    consumer = clients.reader(settings)
    try:
        present = clients.cluster_topics(settings, consumer, timeout_s)
        return [
            _survey_one(settings, consumer, dlq, present, scan_limit, timeout_s) for dlq in dlqs
        ]
    finally:
        consumer.close()


def _survey_one(
    settings: Settings,
    consumer: Consumer,
    dlq: DlqName,
    present: dict[str, object],
    scan_limit: int,
    timeout_s: float,
) -> DlqSurvey:
    topic = dlq_topic(settings, dlq)
    if topic not in present:
        return DlqSurvey(dlq, topic, exists=False)
    partitions = clients.topic_partitions(settings, consumer, topic, timeout_s)
    bounds = clients.watermarks(settings, consumer, topic, partitions, timeout_s)
    result = DlqSurvey(dlq, topic, exists=True, partitions=len(partitions))
    result.messages = sum(high - low for low, high in bounds.values())
    quota = math.ceil(scan_limit / len(partitions)) if scan_limit > 0 else 0
    starts = {p: max(low, high - quota) for p, (low, high) in bounds.items()}
    for letter in read_range(consumer, topic, starts, _ends(bounds)):
        result.count(letter)
    heads = {p: low for p, (low, _) in bounds.items() if starts[p] > low}
    if heads:  # the tail scan missed the oldest records: look at each partition's first one
        firsts = {p: low + 1 for p, low in heads.items()}
        for letter in read_range(consumer, topic, heads, firsts):
            result.see_time(letter.timestamp)
    return result


def _ends(bounds: Bounds) -> dict[int, int]:
    return {p: high for p, (_, high) in bounds.items()}


def peek(
    settings: Settings,
    dlq: DlqName,
    limit: int = 10,
    partition: int | None = None,
    offset: int | None = None,
    timeout_s: float = clients.DEFAULT_TIMEOUT_S,
) -> list[DeadLetter]:
    """The ``limit`` oldest records from ``offset`` (in ``partition``, or in every partition).

    Up to ``limit`` records are read from each partition and the oldest ``limit`` of them kept,
    ordered by timestamp, so a page spans partitions the way the records arrived.
    """
    topic = dlq_topic(settings, dlq)
    consumer = clients.reader(settings)
    try:
        partitions = clients.topic_partitions(settings, consumer, topic, timeout_s)
        if partition is not None and partition not in partitions:
            raise DlqError(f"{topic} has no partition {partition} (it has {len(partitions)})")
        chosen = [partition] if partition is not None else partitions
        bounds = clients.watermarks(settings, consumer, topic, chosen, timeout_s)
        starts = {
            p: low if offset is None else min(max(offset, low), high)
            for p, (low, high) in bounds.items()
        }
        ends = {p: min(starts[p] + limit, high) for p, (_, high) in bounds.items()}
        letters = list(read_range(consumer, topic, starts, ends))
    finally:
        consumer.close()
    letters.sort(key=_arrival)
    return letters[:limit]


def _arrival(letter: DeadLetter) -> tuple[float, int, int]:
    at = letter.timestamp.timestamp() if letter.timestamp else float("-inf")
    return at, letter.partition, letter.offset
