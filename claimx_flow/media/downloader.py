"""Fetching one media file from its presigned URL into the local cache, defensively.

The URL arrives in a message, so nothing about it is trusted: it is parsed once, by the parser
the HTTP client uses, and that parsed URL is both what is checked and what is fetched; the host
must be on the allowlist, redirects are not followed, the size limit is enforced while streaming
(not after), a compressed response (``Content-Encoding``) is refused rather than inflated, and a
body shorter than announced is an error. In production (``DOWNLOAD_REQUIRE_HTTPS``) the host
must also be, and resolve to, public addresses only (:mod:`claimx_flow.media.addresses`).

Each attempt writes a cache file of its own (``{media_id}.{attempt}.bin``), so one attempt's
failure never touches a file another attempt wrote, and a file its cached message still points
to stays until the upload releases it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import aiohttp
from yarl import URL

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.media import addresses
from claimx_flow.media.cache_runs import CacheRun
from claimx_flow.media.cache_spool import CacheSpool
from claimx_flow.media.tasks import InvalidMediaTask, storage_path
from claimx_flow.models import CachedFile, DownloadTask
from claimx_flow.models.messages import DOWNLOAD_TASK_MAX_BYTES, REFRESHED_TASK_MAX_BYTES
from claimx_flow.runtime import metrics
from claimx_flow.storage.paths import UnsafePathError, check_id

CHUNK_BYTES = 256 * 1024
MAX_URL_CHARS = 8192
"""A presigned S3 URL is 1-2 kB; web servers refuse request lines much past 8 kB anyway."""
_PERMANENT_STATUSES = {404, 410}
# A host name as DNS can carry it (IDNA already applied): labels of letters, digits, "-", "_".
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?")
# A served media type worth recording; anything else is recorded as the generic one.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,63}/[A-Za-z0-9!#$&^_.+-]{1,63}")
GENERIC_TYPE = "application/octet-stream"


class DownloadError(ClaimxError):
    """A download that did not produce a cached file, with how it should be routed.

    ``expired`` marks a presigned URL past its lifetime: refresh it and try again at once.
    """

    def __init__(self, category: ErrorCategory, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason
        self.expired = expired


def _refused(reason: str) -> DownloadError:
    return DownloadError(ErrorCategory.PERMANENT, reason)


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

    def check(self, task: DownloadTask) -> URL:
        """Refuse, before any request, what must never be fetched; the URL to fetch."""
        file_type = task.file_type.lower().lstrip(".")
        if file_type not in self.allowed_types:
            raise _refused(f"file type {file_type[:40]!r} not allowed")
        limit = REFRESHED_TASK_MAX_BYTES if task.refresh_count else DOWNLOAD_TASK_MAX_BYTES
        try:
            storage_path(task, limit)
        except InvalidMediaTask as exc:
            raise _refused(exc.reason) from None
        return self.check_url(task.download_url)

    def check_url(self, url: str) -> URL:
        """``url`` parsed as the HTTP client parses it, if it may be fetched."""
        if len(url) > MAX_URL_CHARS:
            raise _refused(f"URL of {len(url)} characters over the limit of {MAX_URL_CHARS}")
        try:
            url.encode("utf-8")
            address = URL(url)
            port = address.port
        except ValueError as exc:  # UnicodeError too: a bad IPv6 literal, port, IDNA label
            raise _refused(f"malformed URL ({_first_line(exc)})") from None
        allowed_schemes = ("https",) if self.require_https else ("https", "http")
        if address.scheme not in allowed_schemes:
            raise _refused(f"URL scheme {address.scheme[:20]!r} not allowed")
        if address.user or address.password:
            raise _refused("URL with credentials not allowed")
        host = (address.raw_host or "").lower()
        literal = addresses.parse_ip(host)
        if literal is None and not _HOST_NAME.fullmatch(host):
            raise _refused(f"malformed host {host[:80]!r}")
        if port is not None and not 0 < port < 65536:
            raise _refused(f"port {port} not allowed")
        if literal is not None and self.public_only and not addresses.is_public(literal):
            # The HTTP client skips the resolver for literal addresses: check them here.
            raise _refused(f"host {host!r} is not a public address")
        if not self._allowed(host, literal):
            raise _refused(f"host {host[:80]!r} not in the allowlist")
        return address

    def _allowed(self, host: str, literal: addresses.IPAddress | None) -> bool:
        """On the allowlist by name pattern, or (for an address) as the same address written
        another way (``::ffff:127.0.0.1`` is ``::ffff:7f00:1``)."""
        for pattern in self.allowed_hosts:
            if fnmatch(host, pattern):
                return True
            if literal is not None and addresses.parse_ip(pattern) == literal:
                return True
        return False


def cache_file(cache_dir: Path, media_id: str, attempt: str | None = None) -> Path:
    """The cache path of one download attempt of a media file (``attempt``: its tag)."""
    name = check_id(media_id, "media_id")
    return cache_dir / (f"{name}.{attempt}.bin" if attempt else f"{name}.bin")


def new_attempt() -> str:
    """A tag no other attempt has."""
    return uuid.uuid4().hex[:16]


async def download_to_cache(
    session: aiohttp.ClientSession,
    task: DownloadTask,
    run: CacheRun,
    policy: DownloadPolicy,
    attempt: str | None = None,
) -> CachedFile:
    """Stream ``task``'s URL into the cache with its sha256; raise ``DownloadError`` on failure.

    The file is named after ``attempt`` (a fresh tag if not given). On failure nothing of this
    attempt is left in the cache, and nothing of any other attempt is touched.
    """
    url = policy.check(task)
    try:
        target = cache_file(run.cache_dir, task.media_id, attempt or new_attempt())
    except UnsafePathError as exc:
        raise _refused(str(exc)) from None
    spool = CacheSpool(run.partial(target))
    started, outcome = time.perf_counter(), "failed"
    try:
        past_expiry = task.expires_at is not None and task.expires_at <= datetime.now(UTC)
        async with asyncio.timeout(policy.timeout_s):
            content_type = await _stream(session, url, spool, policy, past_expiry)
            digest = await spool.commit(target)
        cached = CachedFile(str(target), spool.size, digest, content_type, datetime.now(UTC))
        outcome = "ok"
    except TimeoutError:
        raise DownloadError(
            ErrorCategory.TRANSIENT, f"download timed out after {policy.timeout_s:g}s"
        ) from None
    except aiohttp.InvalidURL:
        raise _refused("invalid URL") from None
    except aiohttp.ClientError as exc:
        refused = addresses.describe(exc)
        if refused is not None:
            raise _refused(refused) from None
        raise DownloadError(
            ErrorCategory.TRANSIENT, f"connection failed: {type(exc).__name__}"
        ) from None
    except OSError as exc:  # the cache volume: full, gone, read-only
        raise DownloadError(
            ErrorCategory.TRANSIENT, f"cache write failed: {exc.strerror or type(exc).__name__}"
        ) from None
    finally:
        if outcome != "ok":
            spool.discard()  # waits for a commit running in its thread, so this is final:
            if spool.committed:  # a file this attempt renamed into place is its own
                target.unlink(missing_ok=True)
        metrics.DOWNLOAD_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)
    metrics.DOWNLOADS.inc()
    metrics.DOWNLOAD_BYTES.inc(cached.size)
    return cached


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:120]


async def _stream(
    session: aiohttp.ClientSession,
    url: URL,
    spool: CacheSpool,
    policy: DownloadPolicy,
    past_expiry: bool,
) -> str:
    """Stream ``url``'s body into ``spool`` within the policy; the content type served."""
    async with session.get(
        url, allow_redirects=False, auto_decompress=False, headers={"Accept-Encoding": "identity"}
    ) as response:
        await _raise_for_status(response, past_expiry)
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
        return media_type(response.headers.get("Content-Type", GENERIC_TYPE))


async def _raise_for_status(response: aiohttp.ClientResponse, past_expiry: bool) -> None:
    """``past_expiry``: the task's ``expires_at`` has passed, so a 400 or 403 is the URL's
    expiry even where the host's refusal does not say so."""
    status = response.status
    if status == 200:
        return
    if status in (400, 403):
        body = (await response.content.read(2048)).decode("utf-8", "replace").lower()
        if past_expiry or "expired" in body:
            raise DownloadError(ErrorCategory.TRANSIENT, "presigned URL expired", expired=True)
        raise DownloadError(ErrorCategory.PERMANENT, f"HTTP {status} from media host")
    if 300 <= status < 400:
        raise DownloadError(ErrorCategory.PERMANENT, f"redirect (HTTP {status}) not followed")
    if status in _PERMANENT_STATUSES:
        metrics.download_not_found(status)
        raise DownloadError(ErrorCategory.PERMANENT, f"HTTP {status}: media gone")
    if status == 429 or status >= 500:
        raise DownloadError(ErrorCategory.TRANSIENT, f"HTTP {status} from media host")
    raise DownloadError(ErrorCategory.PERMANENT, f"HTTP {status} from media host")


def media_type(header: str) -> str:
    """The served type without its parameters, if it is a plain ``type/subtype``: a header is
    the media host's text, and it travels on into the cached message and the attachment row."""
    value = header.split(";", 1)[0].strip()
    return value if _MEDIA_TYPE.fullmatch(value) else GENERIC_TYPE
