"""Download: download tasks → files in the cache + cached-download messages, or failures.

An expired presigned URL is refreshed from the media API and tried again at once (a bounded
number of times); only then does the failure take the normal route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import aiohttp

from claimx_flow.api import ClaimXApiClient
from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.media.cache_runs import CacheRun, sweep_orphans
from claimx_flow.media.downloader import (
    DownloadError,
    DownloadPolicy,
    cache_file,
    download_to_cache,
)
from claimx_flow.models import (
    CachedDownload,
    DownloadTask,
    MessageIds,
)
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.routing.tiers import download_ladder
from claimx_flow.runtime import metrics
from claimx_flow.stages.outputs import StageOutput
from claimx_flow.storage.paths import UnsafePathError

MAX_URL_REFRESHES = 2

SourcedDownload = tuple[KafkaRecord, DownloadTask]


@dataclass
class DownloadStage:
    settings: Settings
    router: FailureRouter
    policy: DownloadPolicy
    make_client: Callable[[Settings], ClaimXApiClient] = ClaimXApiClient
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _client: ClaimXApiClient | None = field(default=None, init=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False)
    _run: CacheRun | None = field(default=None, init=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadStage:
        return cls(
            settings,
            FailureRouter.for_stage(
                settings, "download", settings.claimx_downloads_dlq_topic, download_ladder(settings)
            ),
            DownloadPolicy.from_settings(settings),
        )

    def parse(self, record: KafkaRecord) -> SourcedDownload | OutboundRecord:
        """The message in ``record``, or a DLQ record if it cannot be read."""
        return self.router.read(record, DownloadTask)

    async def process(self, batch: Sequence[SourcedDownload]) -> list[StageOutput]:
        await self._ready()
        metrics.batch(len(batch))
        return list(await asyncio.gather(*(self._one(record, task) for record, task in batch)))

    async def _one(self, record: KafkaRecord, task: DownloadTask) -> StageOutput:
        assert self._slots is not None
        async with self._slots:
            try:
                cached = await self._download(task)
            except (DownloadError, ClaimXApiError) as exc:
                # A file an earlier, unacknowledged attempt left in the cache is not wanted now.
                with suppress(UnsafePathError):  # an id that is no file name has no cache file
                    cache_file(self.settings.effective_cache_dir, task.media_id).unlink(
                        missing_ok=True
                    )
                return self.router.route(
                    record,
                    reason=str(exc),
                    error_class=type(exc).__name__,
                    category=exc.category,
                    ids=MessageIds(task.project_id, task.source_event_id, task.media_id),
                )
        return OutboundRecord(
            self.settings.claimx_downloads_cached_topic, cached.kafka_key, cached.to_json()
        )

    async def _download(self, task: DownloadTask) -> CachedDownload:
        assert self._session is not None and self._run is not None
        while True:
            try:
                return await download_to_cache(self._session, task, self._run, self.policy)
            except DownloadError as exc:
                if not exc.expired or task.refresh_count >= MAX_URL_REFRESHES:
                    raise
            metrics.URL_REFRESHES.inc()
            task = task.model_copy(
                update={
                    "download_url": await self._fresh_url(task),
                    "refresh_count": task.refresh_count + 1,
                }
            )

    async def _fresh_url(self, task: DownloadTask) -> str:
        assert self._client is not None
        items = await self._client.get_media(task.project_id, [task.media_id])
        for item in items:
            if str(item.get("mediaID", item.get("mediaId"))) == task.media_id:
                link = item.get("fullDownloadLink")
                if isinstance(link, str) and link:
                    return link
        raise DownloadError(
            ErrorCategory.PERMANENT, f"media {task.media_id} no longer offers a download link"
        )

    async def _ready(self) -> None:
        if self._session is None:
            cache_dir = self.settings.effective_cache_dir
            self._run = CacheRun(cache_dir)
            sweep_orphans(cache_dir)
            self._slots = asyncio.Semaphore(self.settings.download_concurrency)
            self._session = aiohttp.ClientSession(
                connector=self.policy.connector(self.settings.download_concurrency),
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s),
            )
            self._client = await self.make_client(self.settings).open()
