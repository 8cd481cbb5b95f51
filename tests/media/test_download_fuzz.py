"""Property fuzzing of the download stage's boundary: generated tasks (URLs valid and not,
weird ports, IPv6, unicode, huge; file names and ids of any text, lone surrogates included)
read and processed by the stage as it runs, the valid ones fetched over HTTP from the
simulator.

The property: every task record ends as exactly one routing (a cached download whose file holds
what it says, or a retry/DLQ record with its original body, its ``retry_count`` following the
attempt, and a readable reason; a DLQ record comes after the file's failed result), nothing
raises, and the cache holds exactly the files of the cached downloads. Examples per test:
``CLAIMX_FUZZ_EXAMPLES`` (default 100 here, to stay CI-friendly).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from claimx_flow.api import ClaimXApiClient
from claimx_flow.config import Settings
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.media.cache_runs import cached_files
from claimx_flow.media.tasks import storage_path
from claimx_flow.models import CachedDownload, DownloadTask, FailureInfo, UploadResult
from claimx_flow.models.messages import CACHED_DOWNLOAD_MAX_BYTES, for_attempt
from claimx_flow.stages import StageOutput
from claimx_flow.stages.download import DownloadStage

EXAMPLES = int(os.environ.get("CLAIMX_FUZZ_EXAMPLES", "100"))
PROJECT = 4711

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # one stage and one simulator for all examples
    ],
)

any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
PORTS = st.sampled_from(["", ":1", ":0", ":65535", ":65536", ":99999", ":-1", ":http", ":"])
HOSTS = st.sampled_from(
    [
        "127.0.0.1",
        "localhost",
        "LOCALHOST",
        "[::1]",
        "[::1",
        "::1",
        "[::ffff:127.0.0.1]",
        "evil.example",
        "127.0.0.1.evil.example",
        "a..b",
        "ex ample",
        "üñí.example",
        "127.0.0.1%2f",
        "0x7f.1",
        "",
        "user:pw@127.0.0.1",
        "127.0.0.1\\@evil.example",
    ]
)
SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp", "file", "javascript", "", "data"])
NAMES = st.sampled_from(
    ["roof.jpg", "../../etc/passwd", "con.jpg", "", ".", "..", "a" * 5000, "x\x00y.jpg"]
)
TYPES = st.sampled_from(["jpg", "JPG", ".png", "exe", "", "mp4", "j/pg"])
NEAR_THE_LIMIT = st.integers(64 * 1024 - 600, 64 * 1024).map(lambda n: "a" * n)
"""Names that bring a task to the size limit, where what the download adds must still fit."""
IDS = st.sampled_from(["1", "1_2", "../x", " ", "a" * 70, "é", "-", "_"])


@st.composite
def media_urls(draw: st.DrawFn, valid: list[str]) -> str:
    kind = draw(st.sampled_from(["valid", "mutated", "built", "text", "huge"]))
    if kind == "valid":
        return draw(st.sampled_from(valid))
    if kind == "mutated":
        url = draw(st.sampled_from(valid))
        at = draw(st.integers(0, len(url)))
        return url[:at] + draw(any_text) + url[at:]
    if kind == "built":
        scheme, host, port = draw(SCHEMES), draw(HOSTS), draw(PORTS)
        return f"{scheme}://{host}{port}/{draw(any_text)}?{draw(any_text)}"
    if kind == "text":
        return draw(st.text(st.characters(exclude_categories=()), max_size=200))
    return "http://127.0.0.1/" + "a" * draw(st.integers(7000, 70_000))


@st.composite
def task_documents(draw: st.DrawFn, valid: list[tuple[str, str]]) -> dict[str, Any]:
    """A download task as JSON would carry it: a good one, one with one field drawn from the
    hostile values, or one with every field drawn so; now and then a field missing."""
    media_id, link = draw(st.sampled_from(valid))
    good: dict[str, Any] = {
        "media_id": media_id,
        "project_id": str(PROJECT),
        "download_url": link,
        "file_name": "roof.jpg",
        "file_type": "jpg",
        "source_event_id": "evt-1",
    }
    hostile = {
        "media_id": IDS | any_text | st.integers(),
        "project_id": IDS | st.integers(-5, 10**20),
        "download_url": media_urls([link for _, link in valid]),
        "file_name": NAMES | any_text | NEAR_THE_LIMIT,
        "file_type": TYPES | any_text,
        "source_event_id": any_text,
    }
    kind = draw(st.sampled_from(["good", "one field", "every field"]))
    changed = {
        "good": [],
        "one field": [draw(st.sampled_from(sorted(hostile)))],
        "every field": sorted(hostile),
    }[kind]
    document = {**good, **{name: draw(hostile[name]) for name in changed}}
    for name in draw(st.sets(st.sampled_from(sorted(document)), max_size=1)):
        del document[name]
    return document


@pytest.fixture
def stage_loop(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> Iterator[tuple[DownloadStage, asyncio.AbstractEventLoop, list[tuple[str, str]]]]:
    """One stage on one event loop for every example, as a stage process runs; and the
    simulator's real media links."""
    settings = api_settings.model_copy(
        update={"cache_dir": tmp_path / "cache", "download_timeout_seconds": 2.0}
    )
    loop = asyncio.new_event_loop()

    async def links() -> list[tuple[str, str]]:
        async with ClaimXApiClient(settings) as client:
            items = await client.get_media(str(PROJECT))
        return [(str(item["mediaID"]), str(item["fullDownloadLink"])) for item in items[:4]]

    stage = DownloadStage.from_settings(settings)
    try:
        yield stage, loop, loop.run_until_complete(links())
    finally:
        loop.run_until_complete(stage.close())
        loop.close()


def check_batch(
    stage: DownloadStage, loop: asyncio.AbstractEventLoop, documents: list[dict[str, Any]]
) -> list[str]:
    """Run ``documents`` as one batch, check the property; where each task went."""
    settings = stage.settings
    records = [
        KafkaRecord(
            settings.claimx_downloads_pending_topic,
            0,
            offset,
            None,
            b"k",
            json.dumps(document, ensure_ascii=True).encode(),
        )
        for offset, document in enumerate(documents)
    ]
    read = [stage.parse(record) for record in records]
    unread = [r for r in read if isinstance(r, OutboundRecord)]
    tasks = [r for r in read if not isinstance(r, OutboundRecord)]

    async def each() -> list[list[StageOutput]]:
        return await asyncio.gather(*(stage.download(task) for task in tasks))

    per_task = loop.run_until_complete(each())

    for record in unread:
        assert record.topic == settings.claimx_downloads_dlq_topic
        assert FailureInfo.from_headers(record.headers).error_message
    cached: list[Path] = []
    out: list[OutboundRecord] = []
    for (source, task), outputs in zip(tasks, per_task, strict=True):
        *before, result = outputs
        assert isinstance(result, OutboundRecord)
        out.append(result)
        if result.topic == settings.claimx_downloads_dlq_topic:  # the file's failed result first
            (failed,) = before
            assert isinstance(failed, OutboundRecord)
            assert failed.topic == settings.claimx_downloads_results_topic
            assert UploadResult.from_json(failed.value).status == "failed"
        else:
            assert before == []
        if result.topic == settings.claimx_downloads_cached_topic:
            download = CachedDownload.from_json(result.value)
            assert isinstance(task, DownloadTask) and download.media_id == task.media_id
            content = Path(download.local_path).read_bytes()
            assert hashlib.sha256(content).hexdigest() == download.sha256
            storage_path(download, CACHED_DOWNLOAD_MAX_BYTES)  # the upload takes what it took
            cached.append(Path(download.local_path))
            continue
        assert result.topic in {
            settings.claimx_downloads_dlq_topic,
            *settings.download_retry_topics,
        }
        info = FailureInfo.from_headers(result.headers)
        assert result.value == for_attempt(source.value, info.attempt)  # else unchanged
        assert info.error_message.strip() and info.stage == "download"
    left = cached_files(settings.effective_cache_dir)
    assert sorted(left) == sorted(cached)  # no partial file, nothing of a failed attempt
    for path in left:  # what the upload would release
        path.unlink()
    return [r.topic for r in [*unread, *out]]


@fuzz
@given(data=st.data())
def test_every_task_ends_as_a_cached_download_or_a_routed_failure(
    stage_loop: tuple[DownloadStage, asyncio.AbstractEventLoop, list[tuple[str, str]]],
    data: st.DataObject,
) -> None:
    stage, loop, valid = stage_loop
    documents = data.draw(st.lists(task_documents(valid), min_size=1, max_size=4))
    for topic in check_batch(stage, loop, documents):
        event(topic)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x",
        "http://127.0.0.1:99999/a.jpg",
        "http://127.0.0.1:0/a.jpg",
        "http://[::1]:1/a.jpg",
        "http://a..b/x.jpg",
        "http://\udcff.example/x.jpg",
        "http://127.0.0.1/\udc80.jpg",
        "http://127.0.0.1/" + "a" * 100_000,
    ],
)
def test_the_urls_that_once_crashed_a_batch(
    stage_loop: tuple[DownloadStage, asyncio.AbstractEventLoop, list[tuple[str, str]]],
    url: str,
) -> None:
    stage, loop, valid = stage_loop
    media_id, link = valid[0]
    good = {
        "media_id": media_id,
        "project_id": str(PROJECT),
        "download_url": link,
        "file_name": "roof.jpg",
        "file_type": "jpg",
        "source_event_id": "evt-1",
    }
    refused, landed = check_batch(stage, loop, [{**good, "download_url": url}, good])
    assert refused == stage.settings.claimx_downloads_dlq_topic
    assert landed == stage.settings.claimx_downloads_cached_topic
