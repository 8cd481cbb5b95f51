"""Fetching one media file from its presigned URL into the local cache, defensively.

The URL arrives in a message, so nothing about it is trusted: the host must be on the
allowlist, redirects are not followed, the size limit is enforced while streaming (not after),
a compressed response (``Content-Encoding``) is refused rather than inflated, and a body shorter
than announced is an error. In production (``DOWNLOAD_REQUIRE_HTTPS``) the host must also be,
and resolve to, public addresses only (:mod:`claimx_flow.media.addresses`). The cache file name is
derived from the media id, so a replayed download overwrites its own earlier attempt instead of
leaving an orphan.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.media import addresses
from claimx_flow.media.cache_runs import CacheRun
from claimx_flow.media.cache_spool import CacheSpool
from claimx_flow.models import CachedDownload, DownloadTask
from claimx_flow.runtime import metrics
from claimx_flow.storage.paths import UnsafePathError, check_id

CHUNK_BYTES = 256 * 1024
_PERMANENT_STATUSES = {404, 410}


class DownloadError(ClaimxError):
    """A download that did not produce a cached file, with how it should be routed.

    ``expired`` marks a presigned URL past its lifetime: refresh it and try again at once.
    """

    def __init__(self, category: ErrorCategory, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason
        self.expired = expired


@dataclass(frozen=True)
class DownloadPolicy:
    """What a download may be: where from, how big, what kind, how long."""

    allowed_hosts: tuple[str, ...]
    allowed_types: frozenset[str]
    max_bytes: int
    require_https: bool
    timeout_s: float
    public_only: bool = False
    """Refuse hosts that are, or resolve to, loopback, private, link-local… addresses."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadPolicy:
        return cls(
            allowed_hosts=tuple(h.lower() for h in settings.download_allowed_hosts),
            allowed_types=frozenset(t.lower().lstrip(".") for t in settings.download_allowed_types),
            max_bytes=settings.download_max_bytes,
            require_https=settings.download_require_https,
            timeout_s=settings.download_timeout_seconds,
            # Production mode: media comes from S3 and claimxperience.com, never from inside.
            public_only=settings.download_require_https,
        )

    def connector(self, limit: int) -> aiohttp.TCPConnector:
        """The connection pool downloads go through: it connects only to checked addresses."""
        resolver = addresses.PublicOnlyResolver() if self.public_only else None
        return aiohttp.TCPConnector(limit=limit, resolver=resolver)

    def check(self, task: DownloadTask) -> None:
        """Refuse, before any request, what must never be fetched."""
        file_type = task.file_type.lower().lstrip(".")
        if file_type not in self.allowed_types:
            raise DownloadError(ErrorCategory.PERMANENT, f"file type {file_type!r} not allowed")
        self.check_url(task.download_url)

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        allowed_schemes = ("https",) if self.require_https else ("https", "http")
        if parts.scheme not in allowed_schemes:
            raise DownloadError(ErrorCategory.PERMANENT, f"URL scheme {parts.scheme!r} not allowed")
        if parts.username or parts.password:
            raise DownloadError(ErrorCategory.PERMANENT, "URL with credentials not allowed")
        host = (parts.hostname or "").lower()
        if not host or not any(fnmatch(host, pattern) for pattern in self.allowed_hosts):
            raise DownloadError(ErrorCategory.PERMANENT, f"host {host!r} not in the allowlist")
        literal = addresses.parse_ip(host)
        if self.public_only and literal is not None and not addresses.is_public(literal):
            # The HTTP client skips the resolver for literal addresses: check them here.
            raise DownloadError(ErrorCategory.PERMANENT, f"host {host!r} is not a public address")


def cache_file(cache_dir: Path, media_id: str) -> Path:
    """The one cache path of a media file."""
    return cache_dir / f"{check_id(media_id, 'media_id')}.bin"


async def download_to_cache(
    session: aiohttp.ClientSession,
    task: DownloadTask,
    run: CacheRun,
    policy: DownloadPolicy,
) -> CachedDownload:
    """Stream ``task``'s URL into the cache with its sha256; raise ``DownloadError`` on failure."""
    policy.check(task)
    try:
        target = cache_file(run.cache_dir, task.media_id)
    except UnsafePathError as exc:
        raise DownloadError(ErrorCategory.PERMANENT, str(exc)) from None
    spool = CacheSpool(run.partial(target))
    started, outcome = time.perf_counter(), "failed"
    try:
        async with asyncio.timeout(policy.timeout_s):
            content_type = await _stream(session, task.download_url, spool, policy)
            digest = await spool.commit(target)
        size = spool.size
        outcome = "ok"
    except TimeoutError:
        raise DownloadError(
            ErrorCategory.TRANSIENT, f"download timed out after {policy.timeout_s:.0f}s"
        ) from None
    except aiohttp.InvalidURL:
        raise DownloadError(ErrorCategory.PERMANENT, "invalid URL") from None
    except aiohttp.ClientError as exc:
        refused = addresses.describe(exc)
        if refused is not None:
            raise DownloadError(ErrorCategory.PERMANENT, refused) from None
        raise DownloadError(
            ErrorCategory.TRANSIENT, f"connection failed: {type(exc).__name__}"
        ) from None
    except OSError as exc:  # the cache volume: full, gone, read-only
        raise DownloadError(
            ErrorCategory.TRANSIENT, f"cache write failed: {exc.strerror or type(exc).__name__}"
        ) from None
    finally:
        if outcome != "ok":
            spool.discard()
        metrics.DOWNLOAD_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)
    metrics.DOWNLOADS.inc()
    metrics.DOWNLOAD_BYTES.inc(size)
    return CachedDownload.from_task(
        task,
        local_path=str(target),
        size=size,
        sha256=digest,
        content_type=content_type,
        downloaded_at=datetime.now(UTC),
    )


async def _stream(
    session: aiohttp.ClientSession, url: str, spool: CacheSpool, policy: DownloadPolicy
) -> str:
    """Stream ``url``'s body into ``spool`` within the policy; the content type served."""
    async with session.get(
        url, allow_redirects=False, auto_decompress=False, headers={"Accept-Encoding": "identity"}
    ) as response:
        await _raise_for_status(response)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # We asked for identity. Inflating could turn kilobytes into gigabytes, and storing
            # the compressed bytes would store something other than the file.
            raise DownloadError(
                ErrorCategory.PERMANENT, f"compressed response (Content-Encoding: {encoding[:40]})"
            )
        announced = response.content_length
        if announced is not None and announced > policy.max_bytes:
            raise DownloadError(
                ErrorCategory.PERMANENT,
                f"file of {announced} bytes over the limit of {policy.max_bytes}",
            )
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            if spool.size + len(chunk) > policy.max_bytes:
                raise DownloadError(
                    ErrorCategory.PERMANENT, f"file over the limit of {policy.max_bytes} bytes"
                )
            await spool.add(chunk)
        if announced is not None and spool.size != announced:
            raise DownloadError(
                ErrorCategory.TRANSIENT, f"body of {spool.size} bytes, {announced} announced"
            )
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        return content_type.split(";")[0].strip()


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    status = response.status
    if status == 200:
        return
    if status in (400, 403):
        body = (await response.content.read(2048)).decode("utf-8", "replace").lower()
        if "expired" in body:
            raise DownloadError(ErrorCategory.TRANSIENT, "presigned URL expired", expired=True)
        raise DownloadError(ErrorCategory.PERMANENT, f"HTTP {status} from media host")
    if 300 <= status < 400:
        raise DownloadError(ErrorCategory.PERMANENT, f"redirect (HTTP {status}) not followed")
    if status in _PERMANENT_STATUSES:
        raise DownloadError(ErrorCategory.PERMANENT, f"HTTP {status}: media gone")
    if status == 429 or status >= 500:
        raise DownloadError(ErrorCategory.TRANSIENT, f"HTTP {status} from media host")
    raise DownloadError(ErrorCategory.PERMANENT, f"HTTP {status} from media host")
