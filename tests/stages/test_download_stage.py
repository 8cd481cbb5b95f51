"""The download stage against the simulator's signed URLs over HTTP: bytes and sha256 right,
expired URLs refreshed and retried at once, refusals routed with their reason."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from claimx_flow.api import ClaimXApiClient
from claimx_flow.config import Settings
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.media.cache_runs import CacheRun, cached_files, sweep_orphans
from claimx_flow.models import CachedDownload, DownloadTask, FailureInfo
from claimx_flow.stages.download import MAX_URL_REFRESHES, DownloadStage
from tests.simulator_fixtures import SIMULATOR_SEED

PROJECT = 4711


def media_task(settings: Settings, index: int = 0) -> DownloadTask:
    async def fetch() -> dict:
        async with ClaimXApiClient(settings) as client:
            return (await client.get_media(str(PROJECT)))[index]

    item = asyncio.run(fetch())
    return DownloadTask(
        media_id=str(item["mediaID"]),
        project_id=str(PROJECT),
        download_url=item["fullDownloadLink"],
        file_name=item["mediaName"],
        file_type=item["mediaType"],
        source_event_id="evt-1",
    )


def record_of(task: DownloadTask) -> KafkaRecord:
    return KafkaRecord("downloads.pending", 0, 42, None, task.kafka_key, task.to_json())


def run_stage(settings: Settings, tasks: list[DownloadTask]) -> list[OutboundRecord]:
    stage = DownloadStage.from_settings(settings)

    async def go() -> list[OutboundRecord]:
        out = await stage.process([(record_of(t), t) for t in tasks])
        return [o for o in out if isinstance(o, OutboundRecord)]

    return asyncio.run(go())


def settings_for(api_settings: Settings, tmp_path: Path, **changes: object) -> Settings:
    return api_settings.model_copy(update={"cache_dir": tmp_path / "cache", **changes})


def expected_bytes(media_id: str) -> bytes:
    return sim_data.media_content(SIMULATOR_SEED, int(media_id), 64 * 1024)


def test_downloads_land_in_the_cache_with_their_checksum(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = settings_for(api_settings, tmp_path)
    tasks = [media_task(settings, i) for i in range(5)]
    out = run_stage(settings, tasks)
    assert {o.topic for o in out} == {settings.claimx_downloads_cached_topic}
    for record in out:
        cached = CachedDownload.from_json(record.value)
        content = expected_bytes(cached.media_id)
        assert Path(cached.local_path).read_bytes() == content
        assert cached.sha256 == hashlib.sha256(content).hexdigest()
        assert cached.bytes == len(content)
    assert sorted(p.name for p in cached_files(tmp_path / "cache")) == sorted(
        f"{t.media_id}.bin" for t in tasks
    )


def test_the_same_media_twice_in_one_batch_is_cached_once_without_a_failure(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A replayed or duplicated task lands in the same batch as its original: both download
    at once into partial files of their own, and both end as cached downloads."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    out = run_stage(settings, [task] * 4)
    assert [o.topic for o in out] == [settings.claimx_downloads_cached_topic] * 4
    assert [p.name for p in cached_files(tmp_path / "cache")] == [f"{task.media_id}.bin"]
    assert (tmp_path / "cache" / f"{task.media_id}.bin").read_bytes() == expected_bytes(
        task.media_id
    )


def test_an_expired_url_is_refreshed_and_retried_at_once(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = settings_for(api_settings, tmp_path)
    sim.set_faults(expired_urls=True)
    task = media_task(settings)
    sim.set_faults(expired_urls=False)
    (out,) = run_stage(settings, [task])
    cached = CachedDownload.from_json(out.value)
    assert cached.refresh_count == 1
    assert cached.download_url != task.download_url
    assert Path(cached.local_path).read_bytes() == expected_bytes(task.media_id)


def test_urls_that_stay_expired_go_to_a_retry_tier_after_bounded_refreshes(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = settings_for(api_settings, tmp_path)
    sim.set_faults(expired_urls=True)
    task = media_task(settings)
    media_calls = sim.stats.requests["media"]
    (out,) = run_stage(settings, [task])
    assert out.topic == settings.download_retry_topics[0]  # transient: the first retry tier
    info = FailureInfo.from_headers(out.headers)
    assert info.error_category == "transient" and "expired" in info.error_message
    assert info.due_at is not None and info.attempt == 1
    assert info.media_id == task.media_id and info.stage == "download"
    assert sim.stats.requests["media"] - media_calls == MAX_URL_REFRESHES
    assert out.value == task.to_json()  # the original message, unchanged
    assert cached_files(tmp_path / "cache") == []  # no partial file left behind


def test_refusals_are_permanent_and_name_the_reason(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = settings_for(api_settings, tmp_path, download_max_bytes=1000)
    base = media_task(settings)
    cases = {
        "over the limit": base,
        "not in the allowlist": base.model_copy(
            update={"download_url": "https://evil.example/a.jpg"}
        ),
        "scheme 'file' not allowed": base.model_copy(update={"download_url": "file:///etc/passwd"}),
        "file type 'exe' not allowed": base.model_copy(update={"file_type": "exe"}),
    }
    out = run_stage(settings, list(cases.values()))
    for (reason, _), record in zip(cases.items(), out, strict=True):
        info = FailureInfo.from_headers(record.headers)
        assert record.topic == settings.claimx_downloads_dlq_topic
        assert info.error_category == "permanent"
        assert reason in info.error_message, info.error_message
        assert "sig=" not in info.error_message  # presigned URLs never leak into headers
    assert cached_files(tmp_path / "cache") == []


def test_media_host_errors_are_transient(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    sim.set_faults(error_rates={"503": 1.0}, apply_to=["media"])
    (out,) = run_stage(settings, [task])
    info = FailureInfo.from_headers(out.headers)
    assert info.error_category == "transient" and "503" in info.error_message
    assert out.topic == settings.download_retry_topics[0]
    assert json.loads(out.value)["media_id"] == task.media_id


def test_partial_files_of_dead_processes_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    live = CacheRun(cache)
    live_part = live.partial(cache / "1.bin")
    live_part.write_bytes(b"in progress")
    dead = CacheRun(cache)
    dead_part = dead.partial(cache / "2.bin")
    dead_part.write_bytes(b"abandoned")
    dead._lock.close()  # what the kernel does when the process dies
    assert sweep_orphans(cache) == 1
    assert live_part.exists() and not dead_part.exists()
