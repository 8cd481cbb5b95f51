"""The messages stages pass to each other through Kafka (CLAIMX_DOMAIN.md §4).

Each is frozen (copy with ``model_copy``), writes itself as JSON whose datetimes carry their UTC
offset, reads back exactly what it wrote, and names its own Kafka key, so no stage has to know
another stage's partitioning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import TypedDict

from claimx_flow.models.events import RawEvent
from claimx_flow.models.parsing import MalformedMessageError, load_json_object, reason_from
from claimx_flow.models.redaction import describe_error
from claimx_flow.models.types import ClaimxId, UtcDateTime, utc_now

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
        """Read a message value; raises ``MalformedMessageError`` with a one-line reason."""
        if value is None:
            raise MalformedMessageError("empty message (no value)")
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
    retry_count: int = Field(0, ge=0)

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
    def message_from_event(cls, event: RawEvent) -> tuple[bytes, bytes]:
        """Kafka key and value of ``from_event(event)``, the same bytes, without the model.

        A validated event holds every field already normalised, so building the task validates
        nothing new; skipping it (and the serializer's model walk) saves ~3.5 us of the ~20 us
        an ingested event costs. ``tests/test_models.py`` holds the two paths to the same bytes.
        """
        fields: _TaskFields = {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "project_id": event.project_id,
            "media_id": event.media_id,
            "task_assignment_id": event.task_assignment_id,
            "video_collaboration_id": event.video_collaboration_id,
            "master_file_name": event.master_file_name,
            "ingested_at": event.ingested_at,
            "retry_count": 0,
        }
        return event.project_id.encode("utf-8"), _TASK_JSON.dump_json(fields)

    @property
    def kafka_key(self) -> bytes:
        return self.project_id.encode("utf-8")


class _TaskFields(TypedDict):
    """An ``EnrichmentTask``'s fields in its order, for writing one straight from an event."""

    event_id: str
    event_type: str
    project_id: str
    media_id: str | None
    task_assignment_id: str | None
    video_collaboration_id: str | None
    master_file_name: str | None
    ingested_at: UtcDateTime
    retry_count: int


_TASK_JSON = TypeAdapter(_TaskFields)


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
    retry_count: int = Field(0, ge=0)
    refresh_count: int = Field(0, ge=0)


class DownloadTask(DownloadFields):
    """A media file to fetch (``claimx.downloads.pending`` and its retry tiers)."""


class CachedDownload(DownloadFields):
    """A downloaded file in the local cache, waiting for upload (``claimx.downloads.cached``)."""

    local_path: str = Field(min_length=1)
    bytes: int = Field(ge=0)
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

    def to_task(self) -> DownloadTask:
        """Back to the download task it came from (to fetch the file again)."""
        return DownloadTask.model_validate(self.model_dump(include=set(DownloadTask.model_fields)))


class UploadResult(MediaMessage):
    """How the upload of one media file ended; ``error`` is set exactly when it failed."""

    onelake_path: str
    bytes: int = Field(ge=0)
    sha256: Sha256Hex
    status: Literal["completed", "failed"]
    error: str | None = None
    source_event_id: str = Field(min_length=1)
    finished_at: UtcDateTime

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Self:
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("error must be set when status is failed, and only then")
        return self

    @classmethod
    def completed(
        cls, cached: CachedDownload, onelake_path: str, finished_at: datetime | None = None
    ) -> Self:
        return cls(**_result_fields(cached, onelake_path, finished_at), status="completed")

    @classmethod
    def failed(
        cls,
        cached: CachedDownload,
        onelake_path: str,
        error: BaseException | str,
        *,
        secrets: tuple[str, ...] = (),
        finished_at: datetime | None = None,
    ) -> Self:
        """A failed upload, its error redacted and truncated like any failure metadata."""
        return cls(
            **_result_fields(cached, onelake_path, finished_at),
            status="failed",
            error=describe_error(error, secrets),
        )


def _result_fields(
    cached: CachedDownload, onelake_path: str, finished_at: datetime | None
) -> dict[str, object]:
    return {
        "media_id": cached.media_id,
        "project_id": cached.project_id,
        "onelake_path": onelake_path,
        "bytes": cached.bytes,
        "sha256": cached.sha256,
        "source_event_id": cached.source_event_id,
        "finished_at": finished_at or utc_now(),
    }
