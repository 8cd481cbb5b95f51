"""Download: download tasks → files in the cache + cached-download messages, or failures.

An expired presigned URL is refreshed from the media API and tried again at once (a bounded
number of times); only then does the failure take the normal route.

Every failure a task causes is that task's: a URL that does not parse, a field that cannot be a
path, a hostile host, a full cache volume, a bug no check foresaw. Each ends as a retry-tier or
DLQ record with a category and a reason while its batch-mates land; the stage fails only when
its own machinery does (the session, the cache folder, the output). The cached message carries
the task's failure headers on, so the upload's failures keep counting its attempts, and names
where the task was read, so a restart reads past a task already downloaded. A task that goes to
the DLQ also sends its media file's failed result to ``claimx.downloads.results``.

Tasks are downloaded one at a time (:meth:`DownloadStage.download`) by a step that starts each
as soon as it arrives and emits its outputs as soon as it is done, holding the tasks in flight in
its recovery state. A restart reads past a task whose cached message is already in Kafka
(``routing/ledger.py``); one it misses writes the same cache file (its tag comes from its
record), so the second run replaces or removes what the first left.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import aiohttp

from claimx_flow.api import ClaimXApiClient
from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.config import Settings
from claimx_flow.enrichment.rows import parse_timestamp
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.kafka.repeats import BEFORE_BAR, RepeatFilter
from claimx_flow.media.cache_runs import CacheRun, sweep_orphans
from claimx_flow.media.deadlines import batch_backstop_s, stall_backstop_s
from claimx_flow.media.downloader import (
    DownloadError,
    DownloadPolicy,
    cache_file,
    download_to_cache,
)
from claimx_flow.models import CachedFile, DownloadTask
from claimx_flow.routing.failures import (
    READ_AT_HEADER,
    FailureRouter,
    previous_failure,
    read_at,
)
from claimx_flow.routing.tiers import download_ladder
from claimx_flow.runtime import metrics
from claimx_flow.runtime.exit import close_at_exit
from claimx_flow.runtime.logs import at
from claimx_flow.stages.outputs import StageOutput

log = logging.getLogger(__name__)
refresh_log = logging.getLogger(f"{__name__}.refresh")
"""A presigned URL that expired and is refreshed: the runbook's ``grep "expired"``, expected
and frequent, so the first a minute is written and the rest counted on the next."""
refresh_log.addFilter(RepeatFilter(BEFORE_BAR, window_s=60.0))

MAX_URL_REFRESHES = 2

SourcedDownload = tuple[KafkaRecord, DownloadTask]


def attempt_of(record: KafkaRecord) -> str:
    """The tag of the cache file a task record's download writes: its own for every record
    (a duplicate task, a retry, a DLQ replay), the same when recovery replays that record, so
    the replay replaces (or, failing, removes) what the crashed run wrote instead of leaving
    it behind."""
    position = f"{record.topic}/{record.partition}/{record.offset}/{record.timestamp_ms}"
    return hashlib.sha256(position.encode("utf-8", "backslashreplace")).hexdigest()[:16]


def cached_headers(record: KafkaRecord) -> list[tuple[str, bytes]]:
    """The cached message's headers: the task's failure envelope, so that an upload failure
    counts on from the download's attempts and reaches the DLQ after ``MAX_RETRIES``; and where
    the task was read, since the message is its whole outcome (``routing.ledger``: a restart
    reads past a task already downloaded instead of fetching it again, from a source that may
    have gone since)."""
    previous = previous_failure(record)
    carried = previous.to_headers() if previous is not None else []
    return [*carried, (READ_AT_HEADER, read_at(record))]


@dataclass
class DownloadStage:
    settings: Settings
    router: FailureRouter
    policy: DownloadPolicy
    make_client: Callable[[Settings], ClaimXApiClient] = ClaimXApiClient
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _exit_hook: Callable[[], None] | None = field(default=None, init=False)
    _client: ClaimXApiClient | None = field(default=None, init=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False)
    _run: CacheRun | None = field(default=None, init=False)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadStage:
        return cls(
            settings,
            FailureRouter.for_stage(
                settings, "download", settings.claimx_downloads_dlq_topic, download_ladder(settings)
            ),
            DownloadPolicy.from_settings(settings),
        )

    @property
    def item_bound_s(self) -> float:
        """The longest one task holds its slot: each fetch and each URL refresh within
        ``DOWNLOAD_TIMEOUT_SECONDS``."""
        return (2 * MAX_URL_REFRESHES + 1) * self.policy.timeout_s

    def batch_backstop_s(self, items: int) -> float:
        return batch_backstop_s(items, self.settings.download_concurrency, self.item_bound_s)

    @property
    def stall_backstop_s(self) -> float:
        """How long downloads may be in flight with none finishing before the step fails."""
        return stall_backstop_s(self.item_bound_s)

    @property
    def drain_bound_s(self) -> float:
        """The longest a graceful stop waits for the tasks in flight: each gets its slot in
        turn, and its deadline counts from its slot."""
        rounds = math.ceil(self.max_in_flight / self.settings.download_concurrency)
        return rounds * self.item_bound_s

    @property
    def max_in_flight(self) -> int:
        """Tasks started and not finished, per process: every slot busy and a batch queued
        behind them, so a freed slot never waits for the input."""
        return self.settings.download_concurrency + self.settings.download_batch_size

    def parse(self, record: KafkaRecord) -> SourcedDownload | OutboundRecord:
        """The message in ``record``, or a DLQ record if it cannot be read."""
        return self.router.read(record, DownloadTask)

    async def download(self, item: SourcedDownload) -> list[StageOutput]:
        """One task's outputs: its cached-download message, or its retry-tier or DLQ routing
        (with its failed result, for the DLQ). Safe to run again for the same record."""
        await self._ready()
        record, task = item
        return await self._one(record, task)

    async def process(self, batch: Sequence[SourcedDownload]) -> list[StageOutput]:
        """The outputs of a whole batch, downloaded together."""
        await self._ready()
        metrics.batch(len(batch))
        outputs = await asyncio.gather(*(self._one(record, task) for record, task in batch))
        return [output for task_outputs in outputs for output in task_outputs]

    async def _one(self, record: KafkaRecord, task: DownloadTask) -> list[StageOutput]:
        assert self._slots is not None
        attempt = attempt_of(record)
        async with self._slots:  # the deadlines below count from here, not from the queue
            try:
                fetched, cached = await self._download(task, attempt)
                return [
                    OutboundRecord(
                        self.settings.claimx_downloads_cached_topic,
                        fetched.kafka_key,
                        cached.message(fetched),
                        cached_headers(record),
                    )
                ]
            except Exception as exc:
                self._forget(task, attempt)
                return list(self._failed(record, task, exc))

    def _forget(self, task: DownloadTask, attempt: str) -> None:
        """Remove this record's cache file, if any: written by this try, or by a run that
        crashed before announcing it; the failure record sends the task on instead. The
        files of other records (a duplicate task, an earlier retry) are theirs to keep."""
        assert self._run is not None
        with suppress(ValueError, OSError):  # an id that is no file name has no file
            cache_file(self._run.cache_dir, task.media_id, attempt).unlink(missing_ok=True)

    def _failed(
        self, record: KafkaRecord, task: DownloadTask, exc: Exception
    ) -> list[OutboundRecord]:
        """The task's retry-tier or DLQ record (after its failed result, for the DLQ)."""
        if isinstance(exc, DownloadError | ClaimXApiError):
            reason, category = str(exc), exc.category
        else:
            # A case no check foresaw: the task's failure all the same, dead-lettered with the
            # error so a replay can send it back once the code handles it.
            log.warning(
                "%s: download failed unexpectedly",
                record.position,
                exc_info=exc,
                extra=at(record),
            )
            reason, category = f"{type(exc).__name__}: {exc}", ErrorCategory.PERMANENT
        return self.router.route_media(
            record,
            task,
            self.settings.claimx_downloads_results_topic,
            reason=reason,
            error_class=type(exc).__name__,
            category=category,
        )

    async def _download(self, task: DownloadTask, attempt: str) -> tuple[DownloadTask, CachedFile]:
        """The file in the cache, and the task as fetched (its URL refreshed, if it was)."""
        assert self._session is not None and self._run is not None
        while True:
            try:
                cached = await download_to_cache(
                    self._session, task, self._run, self.policy, attempt
                )
                return task, cached
            except DownloadError as exc:
                if not exc.expired or task.refresh_count >= MAX_URL_REFRESHES:
                    raise
            metrics.URL_REFRESHES.inc()
            refresh_log.info(
                "download: presigned URL expired, refreshing it | media %s of project %s",
                task.media_id,
                task.project_id,
            )
            try:
                async with asyncio.timeout(self.policy.timeout_s):
                    task = await self._refreshed(task)
            except TimeoutError:
                raise DownloadError(
                    ErrorCategory.TRANSIENT,
                    f"URL refresh timed out after {self.policy.timeout_s:g}s",
                ) from None

    async def _refreshed(self, task: DownloadTask) -> DownloadTask:
        """The task with the media item's fresh link, and the expiry the API gives with it
        (none, if it gives none that reads): a passed expiry is how a refusal that names no
        reason is known to be the link's."""
        assert self._client is not None
        items = await self._client.get_media(task.project_id, [task.media_id])
        for item in items:
            if str(item.get("mediaID", item.get("mediaId"))) == task.media_id:
                link = item.get("fullDownloadLink")
                if isinstance(link, str) and link:
                    expires_at = None  # none where it gives none that reads
                    with suppress(ValueError, TypeError, OverflowError):
                        expires_at = parse_timestamp(item.get("expiresAt"))  # as the media row
                    refreshes = task.refresh_count + 1
                    return task.model_copy(
                        update={
                            "download_url": link,
                            "expires_at": expires_at,
                            "refresh_count": refreshes,
                        }
                    )
        raise DownloadError(
            ErrorCategory.PERMANENT, f"media {task.media_id} no longer offers a download link"
        )

    async def close(self) -> None:
        """Close the media session and the API client (tests; a stage process at its exit)."""
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._opening = asyncio.Lock()  # a lock is its loop's: the next one gets its own

    async def _ready(self) -> None:
        if self._client is not None:
            return
        async with self._opening:  # the first downloads arrive together: one opens for all
            if self._client is None:
                await self._open()

    async def _open(self) -> None:
        if self._run is None:
            cache_dir = self.settings.effective_cache_dir
            self._run = CacheRun(cache_dir)
            sweep_orphans(cache_dir)
        if self._session is None:
            self._slots = asyncio.Semaphore(self.settings.download_concurrency)
            self._session = aiohttp.ClientSession(
                connector=self.policy.connector(self.settings.download_concurrency),
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s),
            )
        self._client = await self.make_client(self.settings).open()
        if self._exit_hook is None:
            self._exit_hook = close_at_exit(self.close)
