"""The messages stages pass to each other through Kafka (CLAIMX_DOMAIN.md §4).

Each is frozen (copy with ``model_copy``), writes itself as JSON whose datetimes carry their UTC
offset, reads back exactly what it wrote, and names its own Kafka key, so no stage has to know
another stage's partitioning.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal, NamedTuple, Self, TypedDict

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from claimx_flow.models.event_fields import EventFields
from claimx_flow.models.events import RawEvent
from claimx_flow.models.parsing import MalformedMessageError, load_json_object, reason_from
from claimx_flow.models.redaction import describe_error
from claimx_flow.models.types import MAX_INT64, ClaimxId, UtcDateTime, utc_iso, utc_now

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class StageMessage(BaseModel):
    """What every inter-stage message shares: JSON on the wire and a Kafka key.

    Unknown fields are ignored, so a stage can be upgraded before the stages that read from it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> bytes:
        """The bytes ``model_dump_json`` would give, without its decode and re-encode."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_json(cls, value: bytes | None) -> Self:
        """Read a message value; raises ``MalformedMessageError`` with a one-line reason.

        pydantic-core reads a well-formed message in one pass (about 3 us where ``json`` and
        ``model_validate`` took 5); anything it refuses is read again the slow way, so a
        refusal's reason, and what a lenient ``json`` accepts (NaN, a nesting deeper than
        pydantic-core takes), stay as they were. ``tests/test_models.py`` checks the two ways
        agree on generated messages.
        """
        if value is None:
            raise MalformedMessageError("empty message (no value)")
        try:
            return cls.model_validate_json(value)
        except ValueError:  # ValidationError, or a number Python would not read
            pass
        document = load_json_object(value)
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            raise MalformedMessageError(reason_from(exc, cls)) from None

    @property
    def kafka_key(self) -> bytes:
        raise NotImplementedError


class EnrichmentTask(StageMessage):
    """An event waiting for enrichment; keyed by project so one project's events meet."""

    event_id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    project_id: ClaimxId
    media_id: ClaimxId | None = None
    task_assignment_id: ClaimxId | None = None
    video_collaboration_id: ClaimxId | None = None
    master_file_name: ClaimxId | None = None
    ingested_at: UtcDateTime
    retry_count: int = Field(0, ge=0, le=MAX_INT64)

    @classmethod
    def from_event(cls, event: RawEvent) -> Self:
        """The first enrichment attempt of a freshly ingested event."""
        return cls(
            event_id=event.event_id,
            event_type=event.event_type,
            project_id=event.project_id,
            media_id=event.media_id,
            task_assignment_id=event.task_assignment_id,
            video_collaboration_id=event.video_collaboration_id,
            master_file_name=event.master_file_name,
            ingested_at=event.ingested_at,
        )

    @classmethod
    def message_from_fields(cls, fields: EventFields) -> tuple[bytes, bytes]:
        """Kafka key and value of the first task of an event read as ``fields``, the same
        bytes as ``from_event`` writes, without the model.

        The fields are normalised already, so building the task validates nothing new;
        skipping it (and the serializer's model walk) saves ~3.5 us per event.
        ``tests/test_models.py`` holds the two paths to the same bytes.
        """
        task: _TaskWire = {  # each field named: a wider dict's other keys stay out
            "event_id": fields["event_id"],
            "event_type": fields["event_type"],
            "project_id": fields["project_id"],
            "media_id": fields["media_id"],
            "task_assignment_id": fields["task_assignment_id"],
            "video_collaboration_id": fields["video_collaboration_id"],
            "master_file_name": fields["master_file_name"],
            "ingested_at": fields["ingested_iso"],  # as UtcDateTime writes it
            "retry_count": 0,
        }
        return fields["project_id"].encode("utf-8"), pydantic_core.to_json(task)

    @property
    def kafka_key(self) -> bytes:
        return self.project_id.encode("utf-8")


class _TaskWire(TypedDict):
    """An ``EnrichmentTask``'s fields in its order as JSON writes them, for writing one straight
    from an event (``ingested_at`` formatted already: a Python serializer per field cost more
    than the rest of the message).

    The wires here hold only text, integers and None, keyed in the model's order, so
    ``pydantic_core.to_json`` writes the model's bytes from them as they are: half the time of
    a ``TypeAdapter`` over the ``TypedDict``, which walks its schema for every message.
    """

    event_id: str
    event_type: str
    project_id: str
    media_id: str | None
    task_assignment_id: str | None
    video_collaboration_id: str | None
    master_file_name: str | None
    ingested_at: str
    retry_count: int


class MediaMessage(StageMessage):
    """A message about one media file; keyed by media id so a file's messages stay in order."""

    media_id: ClaimxId
    project_id: ClaimxId

    @property
    def kafka_key(self) -> bytes:
        return self.media_id.encode("utf-8")


class DownloadFields(MediaMessage):
    """What a download task says, shared by the task and its cached result.

    The URL is presigned (it works as a credential), so it stays out of reprs and logs.
    """

    download_url: str = Field(min_length=1, repr=False)
    file_name: str
    file_type: str
    expires_at: UtcDateTime | None = None
    source_event_id: str = Field(min_length=1)
    retry_count: int = Field(0, ge=0, le=MAX_INT64)
    refresh_count: int = Field(0, ge=0, le=MAX_INT64)


class DownloadTask(DownloadFields):
    """A media file to fetch (``claimx.downloads.pending`` and its retry tiers)."""


DOWNLOAD_TASK_MAX_BYTES = 64 * 1024
"""A download task's JSON: a presigned URL is a few kB, so this leaves room and still lets the
cached message fit any topic. Enrichment refuses to write a larger one, and the download stage
refuses to read one."""

REFRESHED_TASK_MAX_BYTES = DOWNLOAD_TASK_MAX_BYTES + 33 * 1024
"""A task after a URL refresh: the fresh link may be longer (up to the 8,192 characters a URL
may have, 4 bytes each at most) and brings its expiry."""

CACHED_DOWNLOAD_MAX_BYTES = 2 * DOWNLOAD_TASK_MAX_BYTES
"""A cached-download message's JSON: its task, refreshed or not, and the file's fields (a
cache path of up to 4,096 bytes, each escaped to at most 6; size, sha256, type, time). The
upload refuses a larger one; a task the download took always fits."""


class NewDownloadTask(NamedTuple):
    """A media file's first download task, as enrichment makes it from the file's media row.

    It checks nothing: its fields must already be what a ``DownloadTask`` holds after
    validation (ids normalised, the link non-empty text, the expiry a UTC datetime or None).
    A media row's columns are converted to exactly that, so building a ``DownloadTask`` from
    one would validate nothing new; writing the message straight from them saved about 2 us
    per file event. Build it only from a media row (``enrichment.handlers``); a hypothesis test
    over generated API answers (``tests/enrichment/test_batching.py``) holds its bytes to
    ``DownloadTask``'s.
    """

    media_id: str
    project_id: str
    download_url: str
    file_name: str
    file_type: str
    expires_at: datetime | None
    source_event_id: str

    def __repr__(self) -> str:
        # The URL is presigned (a credential): kept out of reprs, as DownloadTask keeps it.
        return f"NewDownloadTask(media_id={self.media_id!r}, project_id={self.project_id!r})"

    @property
    def kafka_key(self) -> bytes:
        return self.media_id.encode("utf-8")

    def to_json(self) -> bytes:
        """The bytes ``DownloadTask(**fields).to_json()`` writes."""
        return pydantic_core.to_json(_download_wire(self, retry_count=0, refresh_count=0))


class _DownloadWire(TypedDict):
    """A ``DownloadTask``'s fields in the order its JSON has them."""

    media_id: str
    project_id: str
    download_url: str
    file_name: str
    file_type: str
    expires_at: str | None
    source_event_id: str
    retry_count: int
    refresh_count: int


def _download_wire(
    task: DownloadTask | NewDownloadTask, *, retry_count: int, refresh_count: int
) -> _DownloadWire:
    """A task's fields as its JSON writes them (the expiry as ``UtcDateTime`` writes it)."""
    expires_at = task.expires_at
    return {
        "media_id": task.media_id,
        "project_id": task.project_id,
        "download_url": task.download_url,
        "file_name": task.file_name,
        "file_type": task.file_type,
        "expires_at": None if expires_at is None else utc_iso(expires_at),
        "source_event_id": task.source_event_id,
        "retry_count": retry_count,
        "refresh_count": refresh_count,
    }


class CachedDownload(DownloadFields):
    """A downloaded file in the local cache, waiting for upload (``claimx.downloads.cached``)."""

    local_path: str = Field(min_length=1)
    bytes: int = Field(ge=0, le=MAX_INT64)
    sha256: Sha256Hex
    content_type: str
    downloaded_at: UtcDateTime

    @classmethod
    def from_task(
        cls,
        task: DownloadTask,
        *,
        local_path: str,
        size: int,
        sha256: str,
        content_type: str,
        downloaded_at: datetime | None = None,
    ) -> Self:
        """The task, plus where its file now is and what it holds."""
        return cls(
            **task.model_dump(),
            local_path=local_path,
            bytes=size,
            sha256=sha256,
            content_type=content_type,
            downloaded_at=downloaded_at or utc_now(),
        )


class CachedFile(NamedTuple):
    """A task's file as the download left it in the cache: with the task, a cached message.

    It checks nothing: its facts must be what a ``CachedDownload`` holds after validation (a
    non-empty path, a size of at least 0, a lowercase hex sha256, a UTC ``downloaded_at``).
    Only ``download_to_cache`` builds one, from the file it has just written.
    """

    local_path: str
    size: int
    sha256: str
    content_type: str
    downloaded_at: datetime

    def message(self, task: DownloadTask) -> bytes:
        """``task``'s cached message: the bytes ``CachedDownload.from_task(task,
        **self._asdict()).to_json()`` writes, without the model.

        The task is validated already and the file's facts come from the download itself
        (``downloaded_at`` a UTC datetime), so the model would validate nothing new; the
        download's event loop writes one of these per file, and building and serializing the
        model cost twice what this does. ``tests/test_models.py`` holds the two to the same
        bytes over generated tasks and files.
        """
        task_fields = _download_wire(
            task, retry_count=task.retry_count, refresh_count=task.refresh_count
        )
        wire: _CachedWire = {
            **task_fields,
            "local_path": self.local_path,
            "bytes": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "downloaded_at": utc_iso(self.downloaded_at),
        }
        return pydantic_core.to_json(wire)


class _CachedWire(_DownloadWire):
    """A ``CachedDownload``'s fields in the order its JSON has them: the task's, then these."""

    local_path: str
    bytes: int
    sha256: str
    content_type: str
    downloaded_at: str


class UploadResult(MediaMessage):
    """How the upload of one media file ended; ``error`` is set exactly when it failed.

    A completed result names the stored file (``onelake_path``, ``bytes``, ``sha256``). A failed
    one is sent when the file goes to the download DLQ, from the download stage (nothing was
    fetched: no path, 0 bytes, no sha256) or the upload stage (the downloaded file's size and
    sha256, no path).
    """

    onelake_path: str | None = None
    bytes: int = Field(0, ge=0, le=MAX_INT64)
    sha256: Sha256Hex | None = None
    status: Literal["completed", "failed"]
    error: str | None = None
    source_event_id: str = Field(min_length=1)
    finished_at: UtcDateTime

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Self:
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("error must be set when status is failed, and only then")
        if self.status == "completed" and (self.onelake_path is None or self.sha256 is None):
            raise ValueError("a completed result names its onelake_path and sha256")
        return self

    @classmethod
    def completed(
        cls, cached: CachedDownload, onelake_path: str, finished_at: datetime | None = None
    ) -> Self:
        return cls(
            **_result_fields(cached, finished_at),
            onelake_path=onelake_path,
            bytes=cached.bytes,
            sha256=cached.sha256,
            status="completed",
        )

    @classmethod
    def failed(
        cls,
        media: DownloadFields,
        onelake_path: str | None,
        error: BaseException | str,
        *,
        secrets: tuple[str, ...] = (),
        finished_at: datetime | None = None,
    ) -> Self:
        """A media file that failed for good, its error redacted and truncated like any failure
        metadata; the size and sha256 of a downloaded file are kept."""
        downloaded = media if isinstance(media, CachedDownload) else None
        return cls(
            **_result_fields(media, finished_at),
            onelake_path=onelake_path,
            bytes=downloaded.bytes if downloaded else 0,
            sha256=downloaded.sha256 if downloaded else None,
            status="failed",
            error=describe_error(error, secrets),
        )


def _result_fields(media: DownloadFields, finished_at: datetime | None) -> dict[str, object]:
    return {
        "media_id": media.media_id,
        "project_id": media.project_id,
        "source_event_id": media.source_event_id,
        "finished_at": finished_at or utc_now(),
    }


RETRY_COUNT = "retry_count"
REFRESH_COUNT = "refresh_count"
_RETRY_COUNT_KEY = b'"retry_count"'
_NEXT_TOKEN = re.compile(r'["{}\[\],]')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)(?![0-9.eE])")
_SPACE = re.compile(r"[ \t\n\r]*")


def for_attempt(value: bytes | None, count: int) -> bytes | None:
    """``value`` as its next attempt reads it: its top-level ``retry_count`` set to ``count``
    and its ``refresh_count``, when it has one, back to 0, every other byte kept.

    Refreshes of a presigned URL are bounded per attempt (``MAX_URL_REFRESHES``). A cached
    message carries the count its download reached; sent back through the retry tiers by a
    failed upload, or replayed, it kept it, and a link that expired while it waited was never
    refreshed again, on every tier to the DLQ and on every replay.

    Only a UTF-8 JSON object whose ``retry_count`` is an integer is changed; anything else
    (not JSON, not an object, no such field, a field that is not an integer) is returned as
    it is. The numbers are replaced where they stand, so key order, spacing and escapes of the
    rest of the message stay byte for byte what the producer sent.
    """
    if not value or _RETRY_COUNT_KEY not in value:
        return value
    try:
        text = value.decode("utf-8")
        document = json.loads(text)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, an int past the digit limit
        return value
    if not isinstance(document, dict) or type(document.get(RETRY_COUNT)) is not int:
        return value
    spans = [(span, str(count)) for span in _top_level_integers(text, RETRY_COUNT)]
    if not spans:
        return value
    if type(document.get(REFRESH_COUNT)) is int and document[REFRESH_COUNT] != 0:
        spans += [(span, "0") for span in _top_level_integers(text, REFRESH_COUNT)]
    for (start, end), written in sorted(spans, reverse=True):  # every copy of a repeated key
        text = text[:start] + written + text[end:]
    return text.encode("utf-8")


def _top_level_integers(text: str, key: str) -> list[tuple[int, int]]:
    """Where the integer values of ``key`` stand among the members of the top-level object of
    ``text`` (valid JSON)."""
    spans: list[tuple[int, int]] = []
    depth = 0
    key_next = False
    at = 0
    while (token := _NEXT_TOKEN.search(text, at)) is not None:
        at = token.start()
        char = text[at]
        if char == '"':
            string = _STRING.match(text, at)
            assert string is not None  # the text is valid JSON
            if depth == 1 and key_next:
                colon = _SPACE.match(text, string.end())
                assert colon is not None
                start = _SPACE.match(text, colon.end() + 1)
                assert start is not None
                number = _INTEGER.match(text, start.end())
                if number is not None and json.loads(string.group()) == key:
                    spans.append(number.span())
                key_next = False
                at = start.end()
            else:
                at = string.end()
            continue
        if char in "{[":
            depth += 1
            key_next = depth == 1
        elif char in "}]":
            depth -= 1
        elif depth == 1:  # a comma between members of the top-level object
            key_next = True
        at += 1
    return spans
