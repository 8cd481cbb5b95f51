"""Upload: cached downloads → stored files, then (in order) the ``claimx_attachments`` row, the
result message, and only then the cache file's removal.

A replay after a crash may find the cache file already gone: if the store holds the file with
the expected size and sha256, the upload is complete and its row and result are produced again
(idempotently); otherwise the message goes back through the download retry tiers to be fetched
anew.

Each upload has its own deadline (``UPLOAD_TIMEOUT_SECONDS``, from when it holds one of
``UPLOAD_CONCURRENCY`` slots); one that runs out is a transient failure, and the rest of its
batch is kept. A failed upload releases its cache file at once: a retry tier leads back to the
downloader, which fetches the file anew, and the DLQ needs no file. An upload that goes to the
DLQ also sends its media file's failed result to ``claimx.downloads.results``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from claimx_flow.config import Settings
from claimx_flow.delta.writer import DeltaWriter
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.media.deadlines import batch_backstop_s
from claimx_flow.media.tasks import storage_path
from claimx_flow.models import CachedDownload, UploadResult
from claimx_flow.models.messages import CACHED_DOWNLOAD_MAX_BYTES
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.routing.tiers import download_ladder
from claimx_flow.runtime import metrics
from claimx_flow.runtime.logs import at
from claimx_flow.storage import FileStore
from claimx_flow.storage.base import ContentMismatch, Fingerprint, StoredFile
from claimx_flow.storage.locations import file_store
from claimx_flow.storage.onelake import DISCARD_TIMEOUT_S

log = logging.getLogger(__name__)

SourcedCached = tuple[KafkaRecord, CachedDownload]


class UploadError(ClaimxError):
    def __init__(self, category: ErrorCategory, reason: str) -> None:
        super().__init__(reason)
        self.category = category


@dataclass(frozen=True)
class UploadCompletion:
    """An uploaded file's last steps, run in this order by the commit sink."""

    row: dict[str, Any]
    result: OutboundRecord
    cache_file: Path | None


UploadOutput = UploadCompletion | OutboundRecord


class RecordSender(Protocol):
    """Writes records to Kafka and returns once each is confirmed."""

    def write_batch(self, items: list[OutboundRecord]) -> None: ...

    def close(self) -> None: ...


@dataclass
class UploadCommitter:
    """The last steps of uploads, in order: attachments row, result message, cache release.

    A file's cache copy may go only once its row is in ``claimx_attachments`` and its result is
    in Kafka. Each step is idempotent, so a crash between them is repaired by the replay. The
    dataflow gives this committer one sink partition in the whole cluster, which also makes it
    the one writer of ``claimx_attachments``.
    """

    writer: DeltaWriter | None
    sender: RecordSender

    def commit(self, values: list[UploadCompletion]) -> None:
        if self.writer is not None:
            metrics.delta_written(self.writer.write([done.row for done in values]))
        self.sender.write_batch([done.result for done in values])
        for done in values:
            if done.cache_file is not None:
                done.cache_file.unlink(missing_ok=True)
        metrics.UPLOADS.inc(len(values))
        metrics.UPLOAD_BYTES.inc(sum(int(done.row.get("bytes") or 0) for done in values))

    def close(self) -> None:
        self.sender.close()


@dataclass
class UploadStage:
    settings: Settings
    router: FailureRouter
    store: FileStore
    _slots: asyncio.Semaphore | None = field(default=None, init=False)
    _slots_loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadStage:
        return cls(
            settings,
            FailureRouter.for_stage(
                settings, "upload", settings.claimx_downloads_dlq_topic, download_ladder(settings)
            ),
            file_store(settings),
        )

    @property
    def item_bound_s(self) -> float:
        """The longest one upload holds its slot: its deadline, plus the clean-up of a staging
        file it was cut off from."""
        return self.settings.upload_timeout_seconds + DISCARD_TIMEOUT_S

    def batch_backstop_s(self, items: int) -> float:
        return batch_backstop_s(items, self.settings.upload_concurrency, self.item_bound_s)

    def parse(self, record: KafkaRecord) -> SourcedCached | OutboundRecord:
        """The message in ``record``, or a DLQ record if it cannot be read."""
        return self.router.read(record, CachedDownload)

    async def process(self, batch: Sequence[SourcedCached]) -> list[UploadOutput]:
        metrics.batch(len(batch))
        slots = self._slots_here()
        done = await asyncio.gather(*(self._one(r, item, slots) for r, item in batch))
        outputs = [out for item_outputs in done for out in item_outputs]
        if any(isinstance(out, UploadCompletion) for out in outputs):
            # Before any row, result or cache release: a failure here fails the whole batch,
            # which recovery replays.
            await self.store.flush()
        return outputs

    async def _one(
        self, record: KafkaRecord, cached: CachedDownload, slots: asyncio.Semaphore
    ) -> list[UploadOutput]:
        local: Path | None = None
        try:
            local = self._cached_file(cached)
            path = storage_path(cached, CACHED_DOWNLOAD_MAX_BYTES)
            async with slots:  # the deadline counts from here, not from the queue
                async with asyncio.timeout(self.settings.upload_timeout_seconds):
                    stored, cache_file = await self._store(cached, path, local)
            now = datetime.now(UTC)
            result = UploadResult.completed(cached, stored.uri, finished_at=now)
            return [
                UploadCompletion(
                    row=attachment_row(cached, stored, now),
                    result=OutboundRecord(
                        self.settings.claimx_downloads_results_topic,
                        result.kafka_key,
                        result.to_json(),
                    ),
                    cache_file=cache_file,
                )
            ]
        except Exception as exc:
            failure = self._failed(record, cached, exc)
            if local is not None and self._downloaded_for(cached, local):
                # Nothing reads it again (see the module docstring). Best effort: what will not
                # go (a folder of that name, a read-only volume) is this message's, not its
                # batch's.
                try:
                    local.unlink(missing_ok=True)
                except OSError as error:
                    log.info("%s: cache file not released: %s", record.position, error)
            return list(failure)

    def _failed(
        self, record: KafkaRecord, cached: CachedDownload, exc: Exception
    ) -> list[OutboundRecord]:
        """The message's retry-tier or DLQ record (after its failed result, for the DLQ)."""
        category = getattr(exc, "category", None)
        reason = str(exc)
        if isinstance(exc, TimeoutError):
            category = ErrorCategory.TRANSIENT
            reason = f"upload timed out after {self.settings.upload_timeout_seconds:g}s"
        elif isinstance(exc, OSError):  # the cache volume or the local store
            category = ErrorCategory.TRANSIENT
        elif not isinstance(category, ErrorCategory):
            # A case no check foresaw: this message's failure all the same, dead-lettered with
            # the error so a replay can send it back once the code handles it.
            log.warning(
                "%s: upload failed unexpectedly",
                record.position,
                exc_info=exc,
                extra=at(record),
            )
            category, reason = ErrorCategory.PERMANENT, f"{type(exc).__name__}: {exc}"
        return self.router.route_media(
            record,
            cached,
            self.settings.claimx_downloads_results_topic,
            reason=reason,
            error_class=type(exc).__name__,
            category=category,
        )

    def _slots_here(self) -> asyncio.Semaphore:
        """``UPLOAD_CONCURRENCY`` slots on the running loop (tests run a stage on several)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.settings.upload_concurrency)
            self._slots_loop = loop
        return self._slots

    async def _store(
        self, cached: CachedDownload, path: str, local: Path
    ) -> tuple[StoredFile, Path | None]:
        content = Fingerprint(cached.bytes, cached.sha256)
        try:
            with metrics.timed(metrics.UPLOAD_SECONDS):
                stored = await self.store.put(path, local, content)
        except FileNotFoundError:
            held = await self.store.holds(path, content)
            if held is not None:  # uploaded before a crash; the cache was already released
                return held, None
            # Gone before it was stored (a duplicate download's failure cleaned it up, a lost
            # volume): transient, because the retry tiers lead back to the downloader, which
            # fetches the file anew.
            raise UploadError(
                ErrorCategory.TRANSIENT, "cache file missing and file not stored"
            ) from None
        except ContentMismatch as exc:
            raise UploadError(
                ErrorCategory.TRANSIENT,  # fetched anew through the retry tiers, as above
                f"cache file does not match its download ({exc})",
            ) from None
        if stored.bytes != cached.bytes:
            raise UploadError(
                ErrorCategory.TRANSIENT,
                f"store holds {stored.bytes} bytes, {cached.bytes} were uploaded",
            )
        return stored, local

    def _cached_file(self, cached: CachedDownload) -> Path:
        """The message's cache file, which must lie in ``CACHE_DIR``: the stage reads, uploads
        and then deletes it, so a path from a message must never reach anything else."""
        local = Path(cached.local_path)
        folder = _real_dir(local.parent)
        if local.name in ("", "..") or not folder.is_relative_to(
            _real_dir(self.settings.effective_cache_dir)
        ):
            raise UploadError(ErrorCategory.PERMANENT, "cache file path outside CACHE_DIR")
        return folder / local.name

    def _downloaded_for(self, cached: CachedDownload, local: Path) -> bool:
        """Whether ``local`` is a file the downloader wrote for this message's media (in the
        cache folder itself, ``{media_id}[.{attempt}].bin``): a failed message, unchecked
        against any content, may release only that, never another media's file or a lock."""
        name = local.name
        return (
            local.parent == _real_dir(self.settings.effective_cache_dir)
            and name.startswith(f"{cached.media_id}.")
            and name.endswith(".bin")
        )


def attachment_row(cached: CachedDownload, stored: StoredFile, now: datetime) -> dict[str, Any]:
    return {
        "media_id": cached.media_id,
        "project_id": cached.project_id,
        "file_name": cached.file_name,
        "file_type": cached.file_type,
        "onelake_path": stored.uri,
        "bytes": cached.bytes,
        "sha256": cached.sha256,
        "content_type": cached.content_type,
        "downloaded_at": cached.downloaded_at,
        "uploaded_at": now,
        "source_event_id": cached.source_event_id,
    }


@lru_cache(maxsize=64)
def _real_dir(folder: Path) -> Path:
    """``folder`` with its links resolved, once per folder: messages name a handful of folders
    (the cache), and ``realpath`` costs a system call per path component."""
    return folder.resolve()
