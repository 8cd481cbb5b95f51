"""The download stage against the simulator's signed URLs over HTTP: bytes and sha256 right,
expired URLs refreshed and retried at once, refusals routed with their reason, each attempt in
a cache file of its own, failure headers carried on to the cached message."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from claimx_flow.api import ClaimXApiClient
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka import repeats
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.media import cache_runs
from claimx_flow.media.cache_runs import CacheRun, cached_files, sweep_orphans
from claimx_flow.models import (
    CachedDownload,
    DownloadTask,
    FailureInfo,
    MessageOrigin,
    UploadResult,
)
from claimx_flow.models.messages import DOWNLOAD_TASK_MAX_BYTES, for_attempt
from claimx_flow.stages import download as download_module
from claimx_flow.stages.download import (
    MAX_URL_REFRESHES,
    DownloadStage,
    attempt_of,
    refresh_log,
)
from claimx_flow.stages.upload import UploadStage
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
        expires_at=item["expiresAt"],
        source_event_id="evt-1",
    )


def record_of(
    task: DownloadTask, offset: int = 42, headers: list[tuple[str, bytes]] | None = None
) -> KafkaRecord:
    return KafkaRecord(
        "downloads.pending", 0, offset, None, task.kafka_key, task.to_json(), headers or []
    )


def run_records(settings: Settings, records: list[KafkaRecord]) -> list[OutboundRecord]:
    stage = DownloadStage.from_settings(settings)

    async def go() -> list[OutboundRecord]:
        try:
            out = await stage.process([(r, DownloadTask.from_json(r.value)) for r in records])
        finally:
            await stage.close()
        return [o for o in out if isinstance(o, OutboundRecord)]

    return asyncio.run(go())


def run_stage(settings: Settings, tasks: list[DownloadTask]) -> list[OutboundRecord]:
    """Each task as a record of its own (its own offset), in one batch."""
    return run_records(settings, [record_of(t, offset) for offset, t in enumerate(tasks)])


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
        f"{t.media_id}.{attempt_of(record_of(t, offset))}.bin" for offset, t in enumerate(tasks)
    )


def test_the_same_media_twice_in_one_batch_is_cached_once_per_task(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A duplicated task lands in the same batch as its original: each downloads into a file of
    its own, and each cached message names its own file, which its upload releases."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    out = run_stage(settings, [task] * 4)
    assert [o.topic for o in out] == [settings.claimx_downloads_cached_topic] * 4
    paths = {CachedDownload.from_json(o.value).local_path for o in out}
    assert sorted(paths) == sorted(str(p) for p in cached_files(tmp_path / "cache"))
    assert len(paths) == 4
    assert all(Path(p).read_bytes() == expected_bytes(task.media_id) for p in paths)


def test_a_failed_duplicate_leaves_the_file_another_attempt_wrote(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """The file of a cached message waiting for upload is not the business of a later attempt
    of the same media: its failure cleans up only what it wrote itself."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    (done,) = run_records(settings, [record_of(task, offset=1)])
    sim.set_faults(error_rates={"503": 1.0}, apply_to=["media"])
    (failed,) = run_records(settings, [record_of(task, offset=2)])
    assert failed.topic == settings.download_retry_topics[0]
    cached = CachedDownload.from_json(done.value)
    assert Path(cached.local_path).read_bytes() == expected_bytes(task.media_id)
    assert cached_files(tmp_path / "cache") == [Path(cached.local_path)]


def test_a_replayed_record_writes_over_its_own_earlier_file(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """Recovery replays a record whose download finished before the crash: the replay writes
    the same file again instead of leaving the first copy behind as an orphan."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    (first,) = run_records(settings, [record_of(task, offset=7)])
    (again,) = run_records(settings, [record_of(task, offset=7)])
    path = CachedDownload.from_json(first.value).local_path
    assert CachedDownload.from_json(again.value).local_path == path
    assert cached_files(tmp_path / "cache") == [Path(path)]


def test_a_replayed_record_that_fails_removes_its_own_earlier_file(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """The first run downloaded the file and crashed before its cached message was written;
    the replay of the same record fails: the task goes on through a retry tier, and the file
    nothing will announce is not left behind."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    run_records(settings, [record_of(task, offset=7)])
    sim.set_faults(error_rates={"503": 1.0}, apply_to=["media"])
    (failed,) = run_records(settings, [record_of(task, offset=7)])
    assert failed.topic == settings.download_retry_topics[0]
    assert cached_files(tmp_path / "cache") == []


def test_the_cached_message_carries_the_tasks_failure_headers(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A task on its third attempt stays on its third attempt through the download, so an
    upload failure counts on from there."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    info = FailureInfo.from_reason(
        "HTTP 503 from media host",
        error_class="DownloadError",
        origin=MessageOrigin(settings.claimx_downloads_pending_topic, 0, 3),
        stage="download",
        category=ErrorCategory.TRANSIENT,
    ).model_copy(update={"attempt": 3})
    headers = [("traceparent", b"00-abc-01"), *info.to_headers()]
    (done,) = run_records(settings, [record_of(task, headers=headers)])
    assert done.topic == settings.claimx_downloads_cached_topic
    carried = FailureInfo.from_headers(done.headers)
    assert (carried.attempt, carried.original_offset) == (3, 3)
    assert all(name.startswith("claimx.") for name, _ in done.headers)


@pytest.mark.parametrize("answer", ["says_expired", "terse"])
def test_an_expired_url_is_refreshed_and_retried_at_once(
    api_settings: Settings,
    sim: RunningSimulator,
    tmp_path: Path,
    answer: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Known expired by the host's words, or, where its 403 gives no reason, by the task's
    ``expires_at`` having passed; the refreshed task carries the fresh link's expiry, and the
    log says so in the words the runbook greps for ("expired")."""
    settings = settings_for(api_settings, tmp_path)
    sim.set_faults(expired_urls=True, expired_answer=answer)
    task = media_task(settings)
    sim.set_faults(expired_urls=False, expired_answer=answer)
    # A filter of its own: the process's has kept an earlier test's line this minute.
    monkeypatch.setattr(refresh_log, "filters", [repeats.RepeatFilter(repeats.BEFORE_BAR)])
    with caplog.at_level(logging.INFO, logger=refresh_log.name):
        (out,) = run_stage(settings, [task])
    (said,) = [r.getMessage() for r in caplog.records if r.name == refresh_log.name]
    assert said == (
        "download: presigned URL expired, refreshing it | "
        f"media {task.media_id} of project {task.project_id}"
    )
    cached = CachedDownload.from_json(out.value)
    assert cached.refresh_count == 1
    assert cached.download_url != task.download_url
    assert task.expires_at is not None and cached.expires_at is not None
    assert cached.expires_at > datetime.now(UTC) > task.expires_at
    assert Path(cached.local_path).read_bytes() == expected_bytes(task.media_id)


def test_a_task_at_the_size_limit_is_refreshed_and_lands(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A refresh makes a task larger (its fresh link's expiry, a longer link): one read at the
    limit must still be fetched, not refused as over it halfway through its download."""
    settings = settings_for(api_settings, tmp_path)
    sim.set_faults(expired_urls=True)
    task = media_task(settings).model_copy(update={"expires_at": None})  # the host says why
    sim.set_faults(expired_urls=False)
    room = DOWNLOAD_TASK_MAX_BYTES - len(task.to_json())
    task = task.model_copy(update={"source_event_id": task.source_event_id + "x" * room})
    assert len(task.to_json()) == DOWNLOAD_TASK_MAX_BYTES
    (out,) = run_stage(settings, [task])
    assert out.topic == settings.claimx_downloads_cached_topic, out.headers
    cached = CachedDownload.from_json(out.value)
    assert cached.refresh_count == 1 and cached.expires_at is not None
    assert Path(cached.local_path).read_bytes() == expected_bytes(task.media_id)


def test_a_refusal_that_gives_no_reason_before_the_expiry_is_permanent(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A 403 that does not say "expired", for a link whose expiry has not passed, is no
    expiry: the task is dead-lettered at once, with no refresh."""
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    forged = task.download_url.replace("sig=", "sig=0")  # the host refuses the signature
    media_lists = sim.stats.requests["media"]
    *_, out = run_stage(settings, [task.model_copy(update={"download_url": forged})])
    assert out.topic == settings.claimx_downloads_dlq_topic
    assert "HTTP 403" in FailureInfo.from_headers(out.headers).error_message
    assert sim.stats.requests["media"] == media_lists  # no media list asked for a fresh link


@pytest.mark.parametrize("answer", ["says_expired", "terse"])
def test_urls_that_stay_expired_go_to_a_retry_tier_after_bounded_refreshes(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path, answer: str
) -> None:
    settings = settings_for(api_settings, tmp_path)
    sim.set_faults(expired_urls=True, expired_answer=answer)
    task = media_task(settings)
    media_calls = sim.stats.requests["media"]
    (out,) = run_stage(settings, [task])
    assert out.topic == settings.download_retry_topics[0]  # transient: the first retry tier
    info = FailureInfo.from_headers(out.headers)
    assert info.error_category == "transient" and "expired" in info.error_message
    assert info.due_at is not None and info.attempt == 1
    assert info.media_id == task.media_id and info.stage == "download"
    assert sim.stats.requests["media"] - media_calls == MAX_URL_REFRESHES
    # The original message, its count of attempts in the body as in the header.
    assert out.value == for_attempt(task.to_json(), 1)
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
    letters = [o for o in out if o.topic == settings.claimx_downloads_dlq_topic]
    results = [o for o in out if o.topic == settings.claimx_downloads_results_topic]
    assert len(letters) == len(results) == len(out) // 2 == len(cases)
    for (reason, _), record, sent in zip(cases.items(), letters, results, strict=True):
        info = FailureInfo.from_headers(record.headers)
        assert info.error_category == "permanent"
        assert reason in info.error_message, info.error_message
        assert "sig=" not in info.error_message  # presigned URLs never leak into headers
        failed = UploadResult.from_json(sent.value)
        assert (failed.status, failed.error) == ("failed", info.error_message)
        assert "sig=" not in (failed.error or "")
    assert cached_files(tmp_path / "cache") == []


def test_media_host_errors_are_transient(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    sim.set_faults(error_rates={"503": 1.0}, apply_to=["media"])
    (out,) = run_stage(settings, [task])  # a retry tier, and no result: the file may land yet
    info = FailureInfo.from_headers(out.headers)
    assert info.error_category == "transient" and "503" in info.error_message
    assert out.topic == settings.download_retry_topics[0]
    assert json.loads(out.value)["media_id"] == task.media_id


@pytest.mark.parametrize("status", [404, 410])
def test_media_gone_is_permanent_and_counted_as_not_found(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path, status: int
) -> None:
    settings = settings_for(api_settings, tmp_path)
    task = media_task(settings)
    counted = {"status": str(status)}
    before = REGISTRY.get_sample_value("claimx_download_not_found_total", counted) or 0.0
    sim.set_faults(error_rates={str(status): 1.0}, apply_to=["media"])
    result, out = run_stage(settings, [task])
    assert out.topic == settings.claimx_downloads_dlq_topic
    info = FailureInfo.from_headers(out.headers)
    assert info.error_category == "permanent"
    assert json.loads(out.value)["retry_count"] == info.attempt == 1
    after = REGISTRY.get_sample_value("claimx_download_not_found_total", counted)
    assert after == before + 1
    # Beside its DLQ copy, and before it, the file's failed result for the results stage.
    assert (result.topic, result.key) == (settings.claimx_downloads_results_topic, out.key)
    failed = UploadResult.from_json(result.value)
    assert (failed.status, failed.media_id, failed.project_id, failed.source_event_id) == (
        "failed",
        task.media_id,
        task.project_id,
        task.source_event_id,
    )
    assert str(status) in (failed.error or "") and failed.error == info.error_message
    assert (failed.bytes, failed.sha256, failed.onelake_path) == (0, None, None)


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


def test_a_sweep_while_a_process_takes_its_lock_leaves_the_lock_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pods sharing the cache start together, and each sweeps as it starts (so does the lab's
    reconciliation): a sweep that runs between a process creating its lock file and locking it
    must not take that file for a dead process's. It did: the sweep deleted the lock file, and a
    sweep holding it at that moment made the new process's lock fail and the stage die."""
    cache = tmp_path / "cache"
    real_flock = cache_runs.fcntl.flock
    swept: list[int] = []

    def sweep_first(file: Any, operation: int) -> None:
        monkeypatch.setattr(cache_runs.fcntl, "flock", real_flock)
        swept.append(sweep_orphans(cache))  # another process sweeps just before this lock
        real_flock(file, operation)

    monkeypatch.setattr(cache_runs.fcntl, "flock", sweep_first)
    run = CacheRun(cache)
    assert swept == [0]
    assert [p.name for p in (cache / cache_runs.RUNS_DIR).iterdir()] == [f"{run.run_id}.lock"]
    part = run.partial(cache / "1.bin")
    part.write_bytes(b"in progress")
    assert sweep_orphans(cache) == 0 and part.exists()


def test_a_claim_left_by_a_process_killed_while_taking_it_is_swept_once_stale(
    tmp_path: Path,
) -> None:
    """A process killed between creating its ``.claiming`` file and renaming it leaves that file
    and nothing else. A sweep deletes it once it is older than any claim still being taken,
    and never one whose process holds it."""
    cache = tmp_path / "cache"
    runs = cache / cache_runs.RUNS_DIR
    runs.mkdir(parents=True)
    stale = time.time() - cache_runs.CLAIM_GRACE_S - 5
    killed, starting, held = (runs / f"{n}.claiming" for n in ("killed", "starting", "held"))
    for claim in (killed, starting, held):
        claim.write_bytes(b"")
    os.utime(killed, (stale, stale))
    os.utime(held, (stale, stale))
    with held.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live process, slow to rename
        assert sweep_orphans(cache) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["held.claiming", "starting.claiming"]


def test_a_file_that_fails_upload_after_the_last_download_retry_is_dead_lettered(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """Download on the last retry, then an upload failure: the attempts counted through both
    stages take the message to the DLQ, not back to the first tier."""
    settings = settings_for(api_settings, tmp_path, claimx_data_dir=tmp_path / "data")
    task = media_task(settings)
    info = FailureInfo.from_reason(
        "HTTP 503 from media host",
        error_class="DownloadError",
        origin=MessageOrigin(settings.claimx_downloads_pending_topic, 0, 9),
        stage="download",
        category=ErrorCategory.TRANSIENT,
    ).model_copy(update={"attempt": settings.max_retries})
    (done,) = run_records(settings, [record_of(task, headers=info.to_headers())])
    cached = CachedDownload.from_json(done.value)
    Path(cached.local_path).write_bytes(b"changed on disk")  # the upload will refuse it
    record = KafkaRecord("claimx.downloads.cached", 0, 1, None, done.key, done.value, done.headers)
    result, failed = asyncio.run(UploadStage.from_settings(settings).process([(record, cached)]))
    assert isinstance(failed, OutboundRecord) and isinstance(result, OutboundRecord)
    assert failed.topic == settings.claimx_downloads_dlq_topic
    assert FailureInfo.from_headers(failed.headers).attempt == settings.max_retries + 1
    assert json.loads(failed.value or b"")["retry_count"] == settings.max_retries + 1
    assert result.topic == settings.claimx_downloads_results_topic
    assert UploadResult.from_json(result.value).status == "failed"


def test_an_unforeseen_error_dead_letters_its_task_not_the_batch(
    api_settings: Settings,
    sim: RunningSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug is the one failure no real peer can be asked to cause, so this test plants one
    (monkeypatch) in the download of one task: that task goes to the DLQ with the error as its
    reason, and its batch-mate lands."""
    settings = settings_for(api_settings, tmp_path)
    broken, fine = media_task(settings, 0), media_task(settings, 1)
    real = download_module.download_to_cache

    async def planted(session, task, run, policy, attempt=None):  # type: ignore[no-untyped-def]
        if task.media_id == broken.media_id:
            raise KeyError("planted")
        return await real(session, task, run, policy, attempt)

    monkeypatch.setattr(download_module, "download_to_cache", planted)
    result, failed, done = run_stage(settings, [broken, fine])
    assert result.topic == settings.claimx_downloads_results_topic
    info = FailureInfo.from_headers(failed.headers)
    assert failed.topic == settings.claimx_downloads_dlq_topic
    assert (info.error_class, info.error_message) == ("KeyError", "KeyError: 'planted'")
    assert done.topic == settings.claimx_downloads_cached_topic


def test_tasks_started_one_at_a_time_share_the_slots_and_one_session(
    api_settings: Settings, sim: RunningSimulator, tmp_path: Path
) -> None:
    """What the overlapped step does: each task handed to ``download`` on its own as it
    arrives. The first ones open the session and the API client once for all, and at most
    DOWNLOAD_CONCURRENCY of them fetch at a time, whenever each was started."""
    settings = settings_for(api_settings, tmp_path, download_concurrency=3)
    tasks = [media_task(settings, i) for i in range(4)] * 3
    sim.set_faults(latency_ms=50, apply_to=["media"])
    stage = DownloadStage.from_settings(settings)
    opened: list[object] = []
    real_open = ClaimXApiClient.open

    async def counted(client: ClaimXApiClient) -> ClaimXApiClient:
        opened.append(client)
        return await real_open(client)

    async def go() -> list[list[OutboundRecord]]:
        try:
            running = []
            for offset, task in enumerate(tasks):
                record = record_of(task, offset)
                running.append(asyncio.ensure_future(stage.download((record, task))))
                await asyncio.sleep(0.005)  # arriving one after another
            return [
                [o for o in out if isinstance(o, OutboundRecord)]
                for out in await asyncio.gather(*running)
            ]
        finally:
            await stage.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClaimXApiClient, "open", counted)
        outputs = asyncio.run(go())
    assert len(opened) == 1
    assert [len(out) for out in outputs] == [1] * len(tasks)
    assert {out[0].topic for out in outputs} == {settings.claimx_downloads_cached_topic}
    assert sim.stats.media_max_in_flight == 3
    assert len(cached_files(tmp_path / "cache")) == len(tasks)
