"""The pipeline's messages: the raw event, what stages send each other, and failure metadata.

Everything that crosses a Kafka topic is defined here, so each stage reads and writes it the
same way.
"""

from claimx_flow.models.events import RawEvent, derive_event_id
from claimx_flow.models.failure import (
    HEADER_PREFIX,
    FailureInfo,
    Headers,
    MalformedHeadersError,
    MessageIds,
    MessageOrigin,
    replace_failure_headers,
)
from claimx_flow.models.messages import (
    CachedDownload,
    CachedFile,
    DownloadTask,
    EnrichmentTask,
    NewDownloadTask,
    StageMessage,
    UploadResult,
)
from claimx_flow.models.parsing import MalformedMessageError
from claimx_flow.models.redaction import describe_error, redact, redact_credentials, truncate
from claimx_flow.models.types import ClaimxId, UtcDateTime, utc_now

__all__ = [
    "HEADER_PREFIX",
    "CachedDownload",
    "CachedFile",
    "ClaimxId",
    "DownloadTask",
    "EnrichmentTask",
    "FailureInfo",
    "Headers",
    "MalformedHeadersError",
    "MalformedMessageError",
    "MessageIds",
    "MessageOrigin",
    "NewDownloadTask",
    "RawEvent",
    "StageMessage",
    "UploadResult",
    "UtcDateTime",
    "derive_event_id",
    "describe_error",
    "redact",
    "redact_credentials",
    "replace_failure_headers",
    "truncate",
    "utc_now",
]
