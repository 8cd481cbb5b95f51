"""Replay sessions: the consumer group that remembers how far a replay got.

A session is named by ``--session`` or, by default, by what the replay selects: the plain
``replay <dlq>`` is session ``all``, and each distinct set of filters (and ``--to`` topic) gets a
session of its own. So running the same command again continues where it stopped, while a
narrow replay (``--event-ids …``) never moves the cursor of the full one past records it did
not take.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.dlq.clients import DlqError, kafka_reason
from claimx_flow.dlq.filters import ReplayFilter
from claimx_flow.dlq.queues import DlqName
from claimx_flow.models import redact


def session_name(selection: ReplayFilter, to_topic: str | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    if selection.is_empty and to_topic is None:
        return "all"
    digest = hashlib.sha256(f"{selection.fingerprint()}|{to_topic or ''}".encode()).hexdigest()
    return f"f{digest[:10]}"


def session_group(settings: Settings, dlq: DlqName, name: str) -> str:
    """``<prefix>-dlq-replay-<dlq>-<session>``: one group per DLQ and session."""
    return settings.consumer_group(f"dlq-replay-{dlq.value}-{name}")


def transactional_id(group: str) -> str:
    """Stable per session, so a second run fences a first one still alive and aborts its chunk."""
    return f"{group}-tx"


@dataclass(frozen=True)
class SessionStart:
    """Where a session continues in each partition, and what an operator must hear about it."""

    starts: dict[int, int]
    warnings: tuple[str, ...] = ()


def session_starts(
    settings: Settings,
    consumer: Consumer,
    group: str,
    topic: str,
    bounds: dict[int, tuple[int, int]],
    timeout_s: float,
    *,
    persist: bool = True,
) -> SessionStart:
    """Where the session continues in each partition: its committed offset, else the start.

    Offsets below the low watermark (purged or expired records) start at the low watermark. A
    partition whose progress Kafka could not read is an error: read as "no progress", it would
    send everything again. Progress past the end means the topic was made anew (its records
    are new to this session), so that partition starts over, and the operator is told.
    """
    asked = [TopicPartition(topic, p) for p in sorted(bounds)]
    try:
        committed = consumer.committed(asked, timeout=timeout_s)
    except KafkaException as exc:
        raise DlqError(
            f"cannot read the replay progress of group {group}: {kafka_reason(settings, exc)}"
        ) from None
    for tp in committed:
        if tp.error is not None:
            raise DlqError(
                f"cannot read the replay progress of group {group} in {topic}[{tp.partition}]: "
                f"{redact(tp.error.str(), settings.secret_values())}"
            )
    starts: dict[int, int] = {}
    warnings: list[str] = []
    for tp in committed:
        low, high = bounds[tp.partition]
        if tp.offset > high:
            warnings.append(
                f"session progress in {topic}[{tp.partition}] is at offset {tp.offset}, past "
                f"the end ({high}): the topic was made anew? replaying that partition from "
                f"its start ({low})"
            )
            starts[tp.partition] = low
            continue
        starts[tp.partition] = low if tp.offset < 0 else max(low, tp.offset)
    restarted = [TopicPartition(topic, p, starts[p]) for p in _past_end(committed, bounds)]
    if restarted and persist:
        # Saved now, not when this run gets there: a dry run, --max or a stop first would leave
        # the old position, which the partition may have grown past by the next run.
        _commit_starts(settings, consumer, group, restarted)
    return SessionStart(starts, tuple(warnings))


def _past_end(committed: list[TopicPartition], bounds: dict[int, tuple[int, int]]) -> list[int]:
    return [tp.partition for tp in committed if tp.offset > bounds[tp.partition][1]]


def _commit_starts(
    settings: Settings, consumer: Consumer, group: str, starts: list[TopicPartition]
) -> None:
    try:
        answer = consumer.commit(offsets=starts, asynchronous=False) or []
    except KafkaException as exc:
        raise DlqError(
            f"cannot save the replay progress of group {group}: {kafka_reason(settings, exc)}"
        ) from None
    for tp in answer:
        if tp.error is not None:
            raise DlqError(
                f"cannot save the replay progress of group {group} in {tp.topic}"
                f"[{tp.partition}]: {redact(tp.error.str(), settings.secret_values())}"
            )
