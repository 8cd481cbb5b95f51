"""Hostile media URLs and media hosts: what must never be fetched is refused before any
connection, what misbehaves is cut off within its limits, and each failure is routed with its
reason and counted while the next download of the batch lands in the cache.

Media hosts are raw loopback servers (``tests.security.hostile``); addresses that must never be
contacted (169.254.169.254, 10/8) are only ever named in URLs, and the tests prove the
downloader refused before it could connect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.media.cache_runs import CacheRun
from claimx_flow.media.downloader import DownloadError, DownloadPolicy, download_to_cache
from claimx_flow.models import CachedDownload, DownloadTask, FailureInfo, UploadResult
from claimx_flow.models.messages import for_attempt
from claimx_flow.stages.download import DownloadStage
from tests.security import hostile
from tests.security.conftest import counted

GOOD_BYTES = b"\xff\xd8\xff\xe0 a small JPEG " * 100
LIMIT = 1024 * 1024


def media(url: str, media_id: str = "4242", file_type: str = "jpg") -> DownloadTask:
    return DownloadTask(
        media_id=media_id,
        project_id="5000001",
        download_url=url,
        file_name=f"photo.{file_type}",
        file_type=file_type,
        source_event_id="evt-1",
    )


@contextmanager
def media_host(bad: hostile.Handler, host: str = "127.0.0.1") -> Iterator[hostile.HostileServer]:
    """``/good.jpg`` is a good file; every other path gets ``bad``."""

    async def handle(exchange: hostile.Exchange) -> None:
        if exchange.request.path == "/good.jpg":
            await exchange.respond(200, GOOD_BYTES, {"Content-Type": "image/jpeg"})
        else:
            await bad(exchange)

    with hostile.serving(handle, host) as server:
        yield server


def settings_for(tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "cache_dir": tmp_path / "cache",
        "download_max_bytes": LIMIT,
        "download_timeout_seconds": 1.0,
    }
    return Settings(**{**values, **changes})


def run_stage(settings: Settings, tasks: list[DownloadTask]) -> list[OutboundRecord]:
    records = [
        KafkaRecord(settings.claimx_downloads_pending_topic, 0, i, None, t.kafka_key, t.to_json())
        for i, t in enumerate(tasks)
    ]
    return run_records(settings, list(zip(records, tasks, strict=True)))


def run_records(
    settings: Settings, batch: list[tuple[KafkaRecord, DownloadTask]]
) -> list[OutboundRecord]:
    stage = DownloadStage.from_settings(settings)

    async def go() -> list[OutboundRecord]:
        try:
            out = await stage.process(batch)
        finally:
            await stage.close()
        return [o for o in out if isinstance(o, OutboundRecord)]

    return routings(settings, asyncio.run(go()))


def routings(settings: Settings, out: list[OutboundRecord]) -> list[OutboundRecord]:
    """Each task's routing, having checked that a DLQ copy follows its file's failed result
    (the results stage counts it)."""
    results = [o for o in out if o.topic == settings.claimx_downloads_results_topic]
    routed = [o for o in out if o.topic != settings.claimx_downloads_results_topic]
    dead = [o for o in routed if o.topic == settings.claimx_downloads_dlq_topic]
    assert [r.key for r in results] == [d.key for d in dead]
    for result, copy in zip(results, dead, strict=True):
        assert out.index(result) < out.index(copy)
        assert UploadResult.from_json(result.value).status == "failed"
    return routed


def refused_then_good(
    settings: Settings, bad: DownloadTask, good_url: str, *, category: str, reason: str
) -> FailureInfo:
    """Run ``bad`` then a good download in one batch: the bad one routed with its reason and
    counted, the good one in the cache, and nothing of the bad one left in the cache."""
    topic = (
        settings.claimx_downloads_dlq_topic
        if category == "permanent"
        else settings.download_retry_topics[0]
    )
    with (
        counted("claimx_errors_total", stage="download", category=category) as errors,
        counted("claimx_failures_routed_total", stage="download", destination=topic) as routed,
        counted("claimx_downloads_total") as downloads,
    ):
        failed, done = run_stage(settings, [bad, media(good_url, media_id="4343")])
    assert failed.topic == topic
    info = FailureInfo.from_headers(failed.headers)
    assert failed.value == for_attempt(bad.to_json(), info.attempt)  # else unchanged
    assert info.error_category == category
    assert reason in info.error_message, info.error_message
    assert (info.stage, info.media_id) == ("download", bad.media_id)
    assert (errors.delta, routed.delta) == (1, 1)
    assert done.topic == settings.claimx_downloads_cached_topic
    cached = CachedDownload.from_json(done.value)
    assert Path(cached.local_path).read_bytes() == GOOD_BYTES
    assert downloads.delta == 1
    cache = settings.effective_cache_dir
    left = sorted(p.name for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock")
    assert left == [Path(cached.local_path).name]  # no partial, nothing of the refused one
    return info


# Refused before any request -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example/steal.jpg", "host 'evil.example' not in the allowlist"),
        ("https://127.0.0.1.evil.example/x.jpg", "not in the allowlist"),
        ("file:///etc/passwd", "URL scheme 'file' not allowed"),
        ("ftp://127.0.0.1/x.jpg", "URL scheme 'ftp' not allowed"),
        ("gopher://127.0.0.1:25/x", "URL scheme 'gopher' not allowed"),
        ("data:image/jpeg;base64,AAAA", "URL scheme 'data' not allowed"),
        ("javascript:alert(1)", "URL scheme 'javascript' not allowed"),
        ("//127.0.0.1/x.jpg", "URL scheme '' not allowed"),
        ("http://user:hunter2@127.0.0.1/x.jpg", "URL with credentials not allowed"),
        # Malformed: once a plain ValueError that failed the whole batch, and on every restart.
        ("http://[::1/x", "malformed URL (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999/a.jpg", "malformed URL (Port out of range 0-65535)"),
        ("http://127.0.0.1:-1/a.jpg", "malformed URL"),
        ("http://127.0.0.1:http/a.jpg", "malformed URL"),
        ("http://127.0.0.1\\@evil.example/a.jpg", "malformed URL"),
        ("http://127.0.0.1:0/a.jpg", "port 0 not allowed"),
        ("http://a..b/x.jpg", "malformed"),
        ("http://ex ample.com/x.jpg", "malformed host 'ex ample.com'"),
        ("http://127.0.0.1%2f/x.jpg", "malformed host"),
        ("http://127.0.0.1/" + "a" * 9000, "URL of 9017 characters over the limit of 8192"),
    ],
)
def test_a_url_that_must_never_be_fetched_is_refused(tmp_path: Path, url: str, reason: str) -> None:
    with media_host(hostile.answer(200, b"never")) as host:
        info = refused_then_good(
            settings_for(tmp_path),
            media(url),
            host.url("/good.jpg"),
            category="permanent",
            reason=reason,
        )
        assert [r.path for r in host.requests] == ["/good.jpg"]
    assert "hunter2" not in info.error_message


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"media_id": "1_2"}, "cannot lead a file name"),
        ({"project_id": "../x"}, "project_id '../x' cannot be used in a storage path"),
        ({"source_event_id": "e" * 70_000}, "over the limit of 65536"),
    ],
)
def test_a_task_media_path_refuses_is_never_downloaded(
    tmp_path: Path, changes: dict[str, str], reason: str
) -> None:
    """What could never be stored, or never travel on as a cached message, is refused before
    the request, not found out after the download."""
    with media_host(hostile.answer(200, b"never")) as host:
        bad = media(host.url("/x.jpg")).model_copy(update=changes)
        refused_then_good(
            settings_for(tmp_path), bad, host.url("/good.jpg"), category="permanent", reason=reason
        )
        assert [r.path for r in host.requests] == ["/good.jpg"]


@pytest.mark.parametrize(
    ("field", "reason"),
    [("file_name", "cannot be encoded as UTF-8"), ("file_type", "not allowed")],
)
def test_text_that_is_not_utf8_is_refused_not_a_crash(
    tmp_path: Path, field: str, reason: str
) -> None:
    """JSON may escape a lone surrogate (``\\udc80``): the parser takes it, but no message,
    row or header can carry it on. Once, the cached message failed to serialise after the
    download, and the whole batch with it."""
    with media_host(hostile.answer(200, b"never")) as host:
        document = json.loads(media(host.url("/x.jpg")).to_json())
        document[field] = "SURROGATE"
        raw = json.dumps(document).replace("SURROGATE", "roof\\udc80.jpg").encode()
        bad = DownloadTask.from_json(raw)
        good = media(host.url("/good.jpg"), media_id="4343")
        settings = settings_for(tmp_path)
        records = [
            KafkaRecord(settings.claimx_downloads_pending_topic, 0, 0, None, b"4242", raw),
            KafkaRecord(
                settings.claimx_downloads_pending_topic, 0, 1, None, b"4343", good.to_json()
            ),
        ]
        failed, done = run_records(settings, list(zip(records, [bad, good], strict=True)))
        assert [r.path for r in host.requests] == ["/good.jpg"]
    assert failed.topic == settings.claimx_downloads_dlq_topic
    assert failed.value == for_attempt(raw, 1)
    assert reason in FailureInfo.from_headers(failed.headers).error_message
    assert done.topic == settings.claimx_downloads_cached_topic


@pytest.mark.parametrize(
    ("served", "recorded"),
    [
        ("image/jpeg; charset=binary", "image/jpeg"),
        ("image/\xe9", "application/octet-stream"),
        ("<script>", "application/octet-stream"),
        ("a" * 200 + "/b", "application/octet-stream"),
    ],
)
def test_a_served_content_type_is_recorded_only_if_it_is_one(
    tmp_path: Path, served: str, recorded: str
) -> None:
    """The header is the media host's text and travels into the cached message and the
    attachment row: a value that is no media type is recorded as the generic one."""
    with media_host(hostile.answer(200, GOOD_BYTES, Content_Type=served)) as host:
        (done,) = run_stage(settings_for(tmp_path), [media(host.url("/x.jpg"))])
    assert CachedDownload.from_json(done.value).content_type == recorded


def test_the_deadline_counts_from_the_slot_not_the_queue(tmp_path: Path) -> None:
    """Three downloads of 0.6 s each through one slot with a 1 s deadline: each is within its
    own deadline, though the last finishes 1.8 s after the batch began."""

    async def slow(exchange: hostile.Exchange) -> None:
        await asyncio.sleep(0.6)
        await exchange.respond(200, GOOD_BYTES, {"Content-Type": "image/jpeg"})

    settings = settings_for(tmp_path, download_concurrency=1, download_timeout_seconds=1.0)
    with media_host(slow) as host:
        started = time.monotonic()
        out = run_stage(settings, [media(host.url(f"/{i}.jpg"), str(i)) for i in range(3)])
        elapsed = time.monotonic() - started
    assert [o.topic for o in out] == [settings.claimx_downloads_cached_topic] * 3
    assert elapsed >= 1.8


def test_plain_http_is_refused_when_https_is_required(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, download_require_https=True)
    policy = DownloadPolicy.from_settings(settings)
    with pytest.raises(DownloadError) as refused:
        policy.check(media("http://127.0.0.1:1/x.jpg"))
    assert refused.value.category is ErrorCategory.PERMANENT
    assert "URL scheme 'http' not allowed" in refused.value.reason


def test_a_file_type_not_allowed_is_refused(tmp_path: Path) -> None:
    with media_host(hostile.answer(200, b"MZ")) as host:
        refused_then_good(
            settings_for(tmp_path),
            media(host.url("/x.exe"), file_type="exe"),
            host.url("/good.jpg"),
            category="permanent",
            reason="file type 'exe' not allowed",
        )
        assert [r.path for r in host.requests] == ["/good.jpg"]


def test_a_media_id_that_is_no_file_name_is_refused_not_a_crash(tmp_path: Path) -> None:
    with media_host(hostile.answer(200, b"x")) as host:
        refused_then_good(
            settings_for(tmp_path),
            media(host.url("/x.jpg"), media_id="../../etc"),
            host.url("/good.jpg"),
            category="permanent",
            reason="cannot be used in a storage path",
        )


# Redirects and private addresses ------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/internal.jpg",
        "http://127.0.0.1:1/x.jpg",
        "file:///etc/passwd",
    ],
)
def test_a_redirect_is_never_followed(tmp_path: Path, target: str) -> None:
    with media_host(hostile.answer(302, Location=target)) as host:
        started = time.monotonic()
        refused_then_good(
            settings_for(tmp_path),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="permanent",
            reason="redirect (HTTP 302) not followed",
        )
        assert time.monotonic() - started < 3.0  # nothing was tried on the unreachable target
        assert sorted(r.path for r in host.requests) == ["/good.jpg", "/x.jpg"]


def test_a_redirect_to_another_allowed_host_is_not_followed_either(tmp_path: Path) -> None:
    with (
        media_host(hostile.answer(200, GOOD_BYTES), host="127.0.0.2") as other,
        media_host(hostile.answer(307, Location=other.url("/x.jpg"))) as host,
    ):
        refused_then_good(
            settings_for(tmp_path, download_allowed_hosts=["127.0.0.1", "127.0.0.2"]),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="permanent",
            reason="redirect (HTTP 307) not followed",
        )
    assert other.connections == 0


def _production(tmp_path: Path, hosts: list[str]) -> Settings:
    return settings_for(tmp_path, download_require_https=True, download_allowed_hosts=hosts)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[fd00::1]",
        "0.0.0.0",
    ],
)
def test_production_refuses_a_private_address_literal(tmp_path: Path, host: str) -> None:
    policy = DownloadPolicy.from_settings(_production(tmp_path, [host.strip("[]")]))
    with pytest.raises(DownloadError) as refused:
        policy.check(media(f"https://{host}/x.jpg"))
    assert refused.value.category is ErrorCategory.PERMANENT
    assert "is not a public address" in refused.value.reason


def test_production_refuses_an_allowed_name_that_resolves_to_a_private_address(
    tmp_path: Path,
) -> None:
    """DNS rebinding: ``localhost`` is on the allowlist, but what it resolves to is checked by
    the resolver the connection uses, and no connection is made."""
    settings = _production(tmp_path, ["localhost"])
    with hostile.serving(hostile.answer(200, GOOD_BYTES)) as listener:
        started = time.monotonic()
        with (
            counted("claimx_errors_total", stage="download", category="permanent") as errors,
            counted(
                "claimx_dlq_messages_total",
                stage="download",
                topic=settings.claimx_downloads_dlq_topic,
            ) as dead,
        ):
            (failed,) = run_stage(settings, [media(f"https://localhost:{listener.port}/x.jpg")])
        assert listener.connections == 0
    info = FailureInfo.from_headers(failed.headers)
    assert failed.topic == settings.claimx_downloads_dlq_topic
    assert info.error_category == "permanent"
    assert "host 'localhost' resolves to" in info.error_message
    assert "not a public address" in info.error_message
    assert (errors.delta, dead.delta) == (1, 1)
    assert time.monotonic() - started < 2.0


def test_development_mode_still_reaches_loopback(tmp_path: Path) -> None:
    """Without DOWNLOAD_REQUIRE_HTTPS (the embedded default) the simulator on 127.0.0.1 serves
    media: the private-address refusal belongs to production mode only."""
    policy = DownloadPolicy.from_settings(settings_for(tmp_path))
    assert not policy.public_only
    policy.check(media("http://127.0.0.1:8090/x.jpg"))


# Misbehaving bodies -------------------------------------------------------------------------


def test_a_body_shorter_than_announced_is_transient(tmp_path: Path) -> None:
    async def short(exchange: hostile.Exchange) -> None:
        await exchange.respond(200, b"x" * 500, content_length=1000)

    with media_host(short) as host:
        refused_then_good(
            settings_for(tmp_path),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="transient",
            reason="connection failed: ClientPayloadError",
        )


def test_a_body_longer_than_announced_is_an_error_and_nothing_is_kept(tmp_path: Path) -> None:
    """The HTTP parser sees bytes after the announced end: the response is refused (and the
    connection dropped), never cut to length and kept, never read past the announcement."""

    async def long(exchange: hostile.Exchange) -> None:
        await exchange.respond(200, b"A" * 100 + b"B" * 100_000, content_length=100)

    with media_host(long) as host:
        refused_then_good(
            settings_for(tmp_path),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="transient",
            reason="connection failed: ClientResponseError",
        )


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-gzip"])
def test_a_compressed_body_is_refused_not_inflated(tmp_path: Path, encoding: str) -> None:
    bomb = hostile.gzip_bomb(128 * LIMIT)  # 128 MB of zeros in about 128 kB
    with media_host(hostile.answer(200, bomb, Content_Encoding=encoding)) as host:
        refused_then_good(
            settings_for(tmp_path, download_max_bytes=100 * LIMIT),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="permanent",
            reason=f"compressed response (Content-Encoding: {encoding})",
        )


def test_an_endless_body_is_stopped_at_the_limit_while_streaming(tmp_path: Path) -> None:
    """No Content-Length and no end: only the limit, enforced as bytes arrive, stops it."""
    with media_host(hostile.endless()) as host:
        started = time.monotonic()
        refused_then_good(
            settings_for(tmp_path, download_timeout_seconds=30.0),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="permanent",
            reason=f"file over the limit of {LIMIT} bytes",
        )
        elapsed = time.monotonic() - started
        time.sleep(0.2)
        sent = host.bytes_sent
    assert elapsed < 5.0  # long before the 30 s timeout
    assert sent < LIMIT + 8 * 1024 * 1024  # the limit plus socket buffers, not "forever"


def test_an_announced_oversize_file_is_refused_before_reading(tmp_path: Path) -> None:
    with media_host(hostile.answer(200, b"x" * (2 * LIMIT))) as host:
        refused_then_good(
            settings_for(tmp_path),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="permanent",
            reason=f"file of {2 * LIMIT} bytes over the limit of {LIMIT}",
        )


def test_a_slow_drip_is_cut_by_the_timeout(tmp_path: Path) -> None:
    with media_host(hostile.endless(b"x", delay_s=0.1)) as host:
        started = time.monotonic()
        refused_then_good(
            settings_for(tmp_path, download_timeout_seconds=1.0),
            media(host.url("/x.jpg")),
            host.url("/good.jpg"),
            category="transient",
            reason="download timed out after 1s",
        )
        assert time.monotonic() - started < 3.0


def test_a_content_type_that_does_not_match_is_recorded_not_refused(tmp_path: Path) -> None:
    """Decision: the served type is stored with the file (``claimx_attachments.content_type``)
    and the file is kept. S3 often serves media as ``binary/octet-stream``; refusing on it
    would dead-letter good files, and nothing downstream opens or executes the bytes."""
    page = b"<html><script>alert(1)</script></html>"
    with media_host(hostile.answer(200, page, Content_Type="text/html; charset=utf-8")) as host:
        (done,) = run_stage(settings_for(tmp_path), [media(host.url("/x.jpg"))])
    cached = CachedDownload.from_json(done.value)
    assert done.topic == settings_for(tmp_path).claimx_downloads_cached_topic
    assert (cached.content_type, cached.file_type) == ("text/html", "jpg")
    assert Path(cached.local_path).read_bytes() == page


def test_the_downloader_makes_exactly_one_request_per_url(tmp_path: Path) -> None:
    """What the session asked for, recorded by aiohttp's own tracing: one GET to the URL given,
    never a second one to where a redirect pointed."""
    asked: list[str] = []

    async def on_start(_s: object, _c: object, params: aiohttp.TraceRequestStartParams) -> None:
        asked.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    policy = DownloadPolicy.from_settings(settings_for(tmp_path))

    async def fetch(url: str) -> None:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            await download_to_cache(session, media(url), CacheRun(tmp_path / "c"), policy)

    with (
        media_host(hostile.answer(301, Location="http://169.254.169.254/")) as host,
        pytest.raises(DownloadError),
    ):
        asyncio.run(fetch(host.url("/x.jpg")))
    assert asked == [host.url("/x.jpg")]
