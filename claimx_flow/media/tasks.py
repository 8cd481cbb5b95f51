"""What a media message must be before anything is fetched or stored for it.

A download task arrives in a message, and its fields travel on: the ids become storage path
segments, the text is copied into the cached-download message, the attachment row and failure
headers. A field that would fail any of those later (a media id ``media_path`` refuses, a file
name holding a lone surrogate from a ``\\ud800`` JSON escape, a task too large to travel on) is
refused here, before any request, as a permanent failure with a reason: met halfway it would
fail after the download, or fail the stage.
"""

from __future__ import annotations

from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.models.messages import DOWNLOAD_TASK_MAX_BYTES, DownloadFields
from claimx_flow.storage.paths import UnsafePathError, media_path


class InvalidMediaTask(ClaimxError):
    """A media message that no attempt can ever process; dead-lettered with ``reason``."""

    category = ErrorCategory.PERMANENT

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def storage_path(message: DownloadFields, max_bytes: int = DOWNLOAD_TASK_MAX_BYTES) -> str:
    """The storage path of ``message``'s file, once its fields are known to travel safely:
    within ``max_bytes`` (a cached download's is ``CACHED_DOWNLOAD_MAX_BYTES``, room for what
    the download adds to any task it took)."""
    try:
        size = len(message.to_json())
    except ValueError:  # pydantic's serialisation error: text that is not valid UTF-8
        raise InvalidMediaTask("task holds text that cannot be encoded as UTF-8") from None
    if size > max_bytes:
        raise InvalidMediaTask(f"task of {size} bytes over the limit of {max_bytes}")
    try:
        return media_path(
            message.project_id, message.media_id, message.file_name, message.file_type
        )
    except UnsafePathError as exc:
        raise InvalidMediaTask(str(exc)) from None
