"""Where a failed message goes, with its failure metadata as Kafka headers.

Every stage routes its failures here, so the rule is written once: the original message,
unchanged, plus ``claimx.*`` headers saying what went wrong, where the message first came from
and how many times it has been tried.

Routing is total: whatever the message holds (an out-of-range timestamp, ids that are not ids,
text that is not UTF-8, a value near the broker's size limit), it gets a record to send. A copy
that would not fit the DLQ topic (``CLAIMX_DLQ_MAX_MESSAGE_BYTES``) is stored truncated, with
headers giving its original size and sha256; one that would not fit a retry tier intact goes
to the DLQ that way instead.

Task messages (enrichment tasks, download tasks, cached downloads) count their attempts in the
body too: a routed copy's ``retry_count`` is its ``claimx.attempt``, and its ``refresh_count``
starts again, since a presigned URL's refreshes are bounded per attempt (``for_attempt``: the
numbers rewritten, the rest byte for byte; a body that is not such a JSON object is left
exactly as it came). A media file that goes to the DLQ also gets a failed ``UploadResult``, sent
just before its DLQ copy, so the results stage counts the failure (``with_failed_result``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from claimx_flow.catalog import StageName
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.kafka.repeats import BEFORE_BAR, RepeatFilter
from claimx_flow.models import (
    HEADER_PREFIX,
    FailureInfo,
    MalformedHeadersError,
    MalformedMessageError,
    MessageIds,
    MessageOrigin,
    StageMessage,
    UploadResult,
    redact,
    replace_failure_headers,
)
from claimx_flow.models.messages import DownloadFields, for_attempt
from claimx_flow.models.redaction import one_line
from claimx_flow.models.types import normalise_id
from claimx_flow.routing.tiers import RetryLadder, due_time
from claimx_flow.runtime import health, metrics
from claimx_flow.runtime.logs import at

log = logging.getLogger(__name__)

routed_log = logging.getLogger(f"{__name__}.routed")
"""One line per routed failure, the first of each kind a minute: what the runbook's ``kubectl
logs -l app=claimx-enricher | grep "API error"`` (or ``"expired"``, ``"upload failed"``) looks
for. An outage fails thousands a second; the rest of a kind are counted on its next line."""
routed_log.addFilter(RepeatFilter(BEFORE_BAR, window_s=60.0))

_FAILED = {
    "ingest": "event failed",
    "enrich": "enrichment failed",
    "download": "download failed",
    "upload": "upload failed",
    "retry": "release failed",
    "results": "result failed",
}
"""The words a routed failure's log line starts with, per stage; an API call's is "API error"."""
API_ERROR_CLASS = "ClaimXApiError"
"""``claimx_flow.api.errors.ClaimXApiError``'s name, not imported: a stage that never calls the
API loads none of its client (``tests/dataflows/test_imports.py``)."""

M = TypeVar("M", bound=StageMessage)


TRUNCATED_HEADER = HEADER_PREFIX + "truncated"
ORIGINAL_SIZE_HEADER = HEADER_PREFIX + "original_size"
ORIGINAL_SHA256_HEADER = HEADER_PREFIX + "original_sha256"
ORIGINAL_KEY_SIZE_HEADER = HEADER_PREFIX + "original_key_size"
ORIGINAL_KEY_SHA256_HEADER = HEADER_PREFIX + "original_key_sha256"
DROPPED_HEADERS_HEADER = HEADER_PREFIX + "dropped_headers"
READ_AT_HEADER = HEADER_PREFIX + "read_at"
"""On a copy that is its message's whole outcome, and on a download's cached message (a
success that is one): where the stage read the message, ``<partition>:<offset>:<topic>``."""
KEPT_KEY_BYTES = 1024
"""What a key that would crowd out the message keeps of itself in a truncated copy."""
RECORD_OVERHEAD = 512
"""Bytes a Kafka record spends beyond its key, value and headers (batch and record framing),
rounded up."""

TASK_STAGES: frozenset[StageName] = frozenset({"enrich", "download", "upload"})
"""The stages whose messages are tasks with a ``retry_count`` (raw events are kept as sent)."""


def origin_of(record: KafkaRecord) -> MessageOrigin:
    return MessageOrigin(record.topic, record.partition, record.offset, record.created_at)


def read_at(record: KafkaRecord) -> bytes:
    """``READ_AT_HEADER``'s value for a copy of ``record``."""
    return f"{record.partition}:{record.offset}:{record.topic}".encode()


def read_position(value: bytes | None) -> tuple[str, int, int] | None:
    """The topic, partition and offset a ``READ_AT_HEADER`` names, or None if it is not one."""
    try:
        partition, offset, topic = (value or b"").decode().split(":", 2)
        return topic, int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None


def failed_result(
    media: DownloadFields,
    reason: str,
    *,
    secrets: tuple[str, ...] = (),
    finished_at: datetime | None = None,
) -> UploadResult | None:
    """A dead-lettered media file's failed result, or None (logged) when its fields make
    none: routing stays total."""
    try:
        return UploadResult.failed(media, None, reason, secrets=secrets, finished_at=finished_at)
    except ValidationError as exc:
        log.warning("media %r: no failed result sent: %s", media.media_id, exc)
        return None


def previous_failure(record: KafkaRecord) -> FailureInfo | None:
    """The failure metadata a retried or replayed message carries, if any.

    Unreadable metadata must not cost the message: it is logged and the message is treated
    as failing for the first time.
    """
    try:
        return FailureInfo.maybe_from_headers(record.headers)
    except MalformedHeadersError as exc:
        log.warning(
            "%s: ignoring malformed failure headers: %s", record.position, exc, extra=at(record)
        )
        return None


@dataclass(frozen=True)
class FailureRouter:
    """Turns a stage's failures into records for its retry tiers or its dead-letter queue."""

    stage: StageName
    dlq_topic: str
    ladder: RetryLadder | None = None
    secrets: tuple[str, ...] = ()
    max_message_bytes: int = 1_000_000

    @classmethod
    def for_stage(
        cls,
        settings: Settings,
        stage: StageName,
        dlq_topic: str,
        ladder: RetryLadder | None = None,
    ) -> FailureRouter:
        return cls(
            stage,
            dlq_topic,
            ladder,
            tuple(settings.secret_values()),
            settings.claimx_dlq_max_message_bytes,
        )

    def read(self, record: KafkaRecord, model: type[M]) -> tuple[KafkaRecord, M] | OutboundRecord:
        """The stage message in ``record``, or a DLQ record saying why it cannot be read."""
        if record.error is not None:
            return self.unreadable(record)
        try:
            return record, model.from_json(record.value)
        except MalformedMessageError as exc:
            return self.route(
                record,
                reason=exc.reason,
                error_class=type(exc).__name__,
                category=ErrorCategory.PERMANENT,
            )

    def unreadable(self, record: KafkaRecord) -> OutboundRecord:
        """A message the Kafka client could not read: to the DLQ. A corrupt one (not
        decompressible) has lost its value, and the DLQ keeps where it was; one whose headers
        could not be read (a header name that is not UTF-8) keeps its value, without them."""
        return self.route(
            record,
            reason=f"unreadable by the Kafka client: {record.error}",
            error_class="KafkaMessageError",
            category=ErrorCategory.PERMANENT,
        )

    def reject(self, record: KafkaRecord, error: Exception) -> OutboundRecord:
        """A record that made the stage's own code fail: to the DLQ, with the error as reason,
        so the record cannot stop the stage (a replay sends it back once the code is fixed)."""
        return self.route(
            record,
            reason=f"{type(error).__name__}: {error}",
            error_class=type(error).__name__,
            category=ErrorCategory.PERMANENT,
        )

    def route(
        self,
        record: KafkaRecord,
        *,
        reason: str,
        error_class: str,
        category: ErrorCategory,
        ids: MessageIds | None = None,
        whole: bool = True,
        spend_attempt: bool = True,
    ) -> OutboundRecord:
        """The record's copy for its retry tier or DLQ. ``whole``: the copy is the record's
        whole outcome (nothing else of it goes anywhere), so it says where the record was read
        (``READ_AT_HEADER``), and a restart that reads the record again reads past it
        (``routing.ledger``). A row refused while the rest of its message went on is not.
        ``spend_attempt=False``: the failure is not the message's (a stage stopping before it
        got to it), so it goes to the tier it is on, and never to the DLQ for it."""
        previous = previous_failure(record)
        info = self._info(record, reason, error_class, category, previous, ids)
        if category is ErrorCategory.AUTH:  # not the message's fault: spend no attempt
            info = info.model_copy(update={"attempt": previous.attempt if previous else 1})
            health.auth_failure()
        elif not spend_attempt:  # as it was: a replayed or never-failed message keeps its 0
            info = info.model_copy(update={"attempt": previous.attempt if previous else 0})
        tier = (
            self.ladder.next_step(category, info.attempt, spent=spend_attempt)
            if self.ladder
            else None
        )
        if tier is not None:
            info = info.model_copy(update={"due_at": due_time(tier, info.last_failed_at)})
        headers = [
            (k, v or b"")
            for k, v in replace_failure_headers(record.headers, info)
            if k != READ_AT_HEADER  # where an earlier stage read it: not this copy's
        ]
        if whole:
            headers.append((READ_AT_HEADER, read_at(record)))
        value = record.value
        if self.stage in TASK_STAGES:
            value = for_attempt(value, info.attempt)
        key = record.key
        if _size(key, value, headers) > self.max_message_bytes:
            # Too large for a copy with our headers: intact to no tier, truncated to the DLQ.
            tier = None
            key, value, headers = self._truncated(record, headers)
        metrics.failure(
            self.stage,
            category,
            tier.delay_s if tier else None,
            tier.topic if tier else self.dlq_topic,
        )
        what = (
            "API error"
            if info.error_class == API_ERROR_CLASS
            else _FAILED.get(self.stage, "failed")
        )
        routed_log.log(
            logging.WARNING if spend_attempt else logging.INFO,  # a stop's hand-back: no failure
            "%s: %s (%s, %s) → %s | %s; %s",
            self.stage,
            what,
            info.error_class,
            category.value,
            f"retry in {tier.delay_s}s" if tier else f"DLQ {self.dlq_topic}",
            one_line(info.error_message),  # masked as the DLQ copy; an HTML body on one line
            record.position,
            extra=at(record),
        )
        return OutboundRecord(
            topic=tier.topic if tier else self.dlq_topic,
            key=key,
            value=value,
            headers=headers,
        )

    def route_media(
        self,
        record: KafkaRecord,
        media: DownloadFields,
        results_topic: str,
        *,
        reason: str,
        error_class: str,
        category: ErrorCategory,
    ) -> list[OutboundRecord]:
        """``route`` for a message about one media file: its ids in the headers, and when it
        goes to the DLQ, the file's failed result first (see ``with_failed_result``)."""
        routed = self.route(
            record,
            reason=reason,
            error_class=error_class,
            category=category,
            ids=MessageIds(media.project_id, media.source_event_id, media.media_id),
        )
        return self.with_failed_result(routed, media, reason, results_topic)

    def with_failed_result(
        self,
        routed: OutboundRecord,
        media: DownloadFields,
        reason: str,
        results_topic: str,
    ) -> list[OutboundRecord]:
        """``routed``, preceded by a failed ``UploadResult`` for ``media`` when it goes to the
        DLQ (not to a retry tier: the file may still land).

        The result comes first: the two share the media id as key, so they keep their order,
        and the DLQ copy is the latest record of the file (``claimx trace`` says "in DLQ").
        Routing stays total: a result that cannot be built is logged and left out.
        """
        if routed.topic != self.dlq_topic:
            return [routed]
        result = failed_result(media, reason, secrets=self.secrets)
        if result is None:
            return [routed]
        return [OutboundRecord(results_topic, result.kafka_key, result.to_json()), routed]

    def _info(
        self,
        record: KafkaRecord,
        reason: str,
        error_class: str,
        category: ErrorCategory,
        previous: FailureInfo | None,
        ids: MessageIds | None,
    ) -> FailureInfo:
        """The failure envelope; ids that are not valid ids are left out rather than fail it."""
        arguments = {
            "error_class": error_class or "Error",
            "origin": origin_of(record),
            "stage": self.stage,
            "category": category,
            "previous": previous,
        }
        message = redact(reason, self.secrets)
        return FailureInfo.from_reason(message, ids=_valid(ids), **arguments)  # type: ignore[arg-type]

    def _truncated(
        self, record: KafkaRecord, headers: list[tuple[str, bytes]]
    ) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers of a copy that fits ``max_message_bytes``, whatever part of
        the record is large: our ``claimx.*`` headers whole; the key whole unless it would take
        more than half the room (then its first ``KEPT_KEY_BYTES``, its size and sha256 said);
        then the value, as much as fits; then the producer's own headers in order while they
        fit, the rest dropped and counted."""
        ours = [(name, data) for name, data in headers if name.startswith(HEADER_PREFIX)]
        theirs = [(name, data) for name, data in headers if not name.startswith(HEADER_PREFIX)]
        original = record.value or b""
        key = record.key
        marks = [
            (TRUNCATED_HEADER, b"true"),
            (ORIGINAL_SIZE_HEADER, str(len(original)).encode()),
            (ORIGINAL_SHA256_HEADER, hashlib.sha256(original).hexdigest().encode()),
        ]
        # Room for the key, value and producer headers, the marks we may add counted in full.
        room = self.max_message_bytes - _size(None, None, [*ours, *marks, *_LATER_MARKS])
        if key is not None and len(key) > room // 2:
            marks += [
                (ORIGINAL_KEY_SIZE_HEADER, str(len(key)).encode()),
                (ORIGINAL_KEY_SHA256_HEADER, hashlib.sha256(key).hexdigest().encode()),
            ]
            key = key[:KEPT_KEY_BYTES]
        room = max(room - len(key or b""), 0)
        value = original[:room]
        room -= len(value)
        kept: list[tuple[str, bytes]] = []
        for name, data in theirs:
            size = _header_size(name, data)
            if size <= room:
                kept.append((name, data))
                room -= size
        if len(kept) < len(theirs):
            marks.append((DROPPED_HEADERS_HEADER, str(len(theirs) - len(kept)).encode()))
        return key, value, [*kept, *ours, *marks]


_LATER_MARKS = [
    (ORIGINAL_KEY_SIZE_HEADER, b"9" * 20),
    (ORIGINAL_KEY_SHA256_HEADER, b"0" * 64),
    (DROPPED_HEADERS_HEADER, b"9" * 20),
]
"""The largest the marks ``_truncated`` may add after measuring are (20 digits, a sha256)."""


def _valid(ids: MessageIds | None) -> MessageIds | None:
    """The ids that are ids: one a message or an API answer garbled (a lone surrogate, say) is
    left out of the headers, not allowed to fail the routing of its message."""
    if ids is None:
        return None
    return MessageIds(*(_id_or_none(i) for i in (ids.project_id, ids.event_id, ids.media_id)))


def _id_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalise_id(value)
    except PydanticCustomError:
        return None


def _size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    named = sum(_header_size(name, data) for name, data in headers)
    return len(key or b"") + len(value or b"") + named + RECORD_OVERHEAD


def _header_size(name: str, data: bytes) -> int:
    """A header's bytes on the wire: its name is sent as UTF-8, where a character may take four."""
    return (len(name) if name.isascii() else len(name.encode("utf-8", "surrogatepass"))) + len(data)
