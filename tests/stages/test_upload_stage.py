"""The upload stage on the local file store: stored bytes verified, replays after the cache was
released repaired from the store, corrupt cache files refused and released, attempts counted on
from the download's."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import CachedDownload, FailureInfo, MessageOrigin, UploadResult
from claimx_flow.stages.upload import UploadCompletion, UploadOutput, UploadStage
from claimx_flow.storage import media_path

CONTENT = b"\x89PNG" + bytes(range(256)) * 300


def cached_file(
    tmp_path: Path, media_id: str = "9001", name: str = "../../etc/roof.png"
) -> CachedDownload:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    local = cache / f"{media_id}.bin"
    local.write_bytes(CONTENT)
    return CachedDownload(
        media_id=media_id,
        project_id="77",
        download_url="http://127.0.0.1/x",
        file_name=name,
        file_type="png",
        source_event_id="evt-9",
        local_path=str(local),
        bytes=len(CONTENT),
        sha256=hashlib.sha256(CONTENT).hexdigest(),
        content_type="image/png",
        downloaded_at=datetime(2026, 11, 27, tzinfo=UTC),
    )


def upload(
    tmp_path: Path, items: list[CachedDownload], headers: list[tuple[str, bytes]] | None = None
) -> list[UploadOutput]:
    settings = Settings(claimx_data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    stage = UploadStage.from_settings(settings)
    records = [
        (KafkaRecord("downloads.cached", 0, i, None, c.kafka_key, c.to_json(), headers or []), c)
        for i, c in enumerate(items)
    ]
    return asyncio.run(stage.process(records))


def download_attempts(attempt: int) -> list[tuple[str, bytes]]:
    """The failure headers a task on its ``attempt``-th failure carries, as the download stage
    passes them on to its cached message."""
    return (
        FailureInfo.from_reason(
            "HTTP 503 from media host",
            error_class="DownloadError",
            origin=MessageOrigin("claimx.downloads.pending", 0, 5),
            stage="download",
            category=ErrorCategory.TRANSIENT,
        )
        .model_copy(update={"attempt": attempt})
        .to_headers()
    )


def test_upload_stores_the_file_under_a_safe_path(tmp_path: Path) -> None:
    cached = cached_file(tmp_path)
    (done,) = upload(tmp_path, [cached])
    assert isinstance(done, UploadCompletion)
    stored = tmp_path / "data" / "files" / media_path("77", "9001", cached.file_name, "png")
    assert stored.read_bytes() == CONTENT
    assert stored.is_relative_to(tmp_path / "data" / "files")
    assert stored.name == "9001_roof.png"
    assert done.row["sha256"] == cached.sha256 and done.row["bytes"] == len(CONTENT)
    assert done.row["onelake_path"] == stored.as_uri()
    result = UploadResult.from_json(done.result.value)
    assert (result.status, result.media_id, result.bytes) == ("completed", "9001", len(CONTENT))
    # The cache is released by the commit sink, after the row and the result, not here.
    assert done.cache_file == Path(cached.local_path) and done.cache_file.exists()


def test_a_replay_after_the_cache_was_released_is_completed_from_the_store(tmp_path: Path) -> None:
    cached = cached_file(tmp_path)
    upload(tmp_path, [cached])
    Path(cached.local_path).unlink()
    (again,) = upload(tmp_path, [cached])
    assert isinstance(again, UploadCompletion)
    assert again.cache_file is None
    assert again.row["sha256"] == cached.sha256


def test_a_cache_file_that_does_not_match_is_fetched_anew(tmp_path: Path) -> None:
    cached = cached_file(tmp_path)
    Path(cached.local_path).write_bytes(CONTENT[:-1] + b"!")
    (failed,) = upload(tmp_path, [cached])
    assert isinstance(failed, OutboundRecord)
    info = FailureInfo.from_headers(failed.headers)
    assert info.stage == "upload" and info.error_category == "transient"
    assert failed.topic == Settings().download_retry_topics[0]  # back to the downloader
    assert "does not match" in info.error_message
    assert not Path(cached.local_path).exists()  # released: the retry fetches the file anew
    assert not (tmp_path / "data" / "files").exists() or not any(
        (tmp_path / "data" / "files").rglob("*.png")
    )


def test_a_lost_cache_file_never_uploaded_is_fetched_anew(tmp_path: Path) -> None:
    cached = cached_file(tmp_path)
    Path(cached.local_path).unlink()
    (failed,) = upload(tmp_path, [cached])
    assert isinstance(failed, OutboundRecord)
    assert failed.topic == Settings().download_retry_topics[0]
    info = FailureInfo.from_headers(failed.headers)
    assert "cache file missing" in info.error_message and info.error_category == "transient"


def test_a_cache_path_that_is_a_folder_fails_its_message_alone(tmp_path: Path) -> None:
    """Its release after the failure met a folder (``IsADirectoryError``) and failed the whole
    batch, which a replay would fail the same way: a stage stopped by one message."""
    good = cached_file(tmp_path, "1", "photo.png")
    odd = cached_file(tmp_path, "2", "photo.png")
    Path(odd.local_path).unlink()
    Path(odd.local_path).mkdir()
    done, failed = upload(tmp_path, [good, odd])
    assert isinstance(done, UploadCompletion) and done.row["media_id"] == "1"
    assert isinstance(failed, OutboundRecord)
    assert failed.topic == Settings().download_retry_topics[0]
    assert FailureInfo.from_headers(failed.headers).media_id == "2"


def test_same_name_in_one_project_never_collides(tmp_path: Path) -> None:
    first = cached_file(tmp_path, "1", "photo.png")
    second = cached_file(tmp_path, "2", "photo.png")
    outputs = upload(tmp_path, [first, second])
    paths = {o.row["onelake_path"] for o in outputs if isinstance(o, UploadCompletion)}
    assert len(paths) == 2


@pytest.mark.parametrize("attempt", [1, 3])
def test_an_upload_failure_counts_on_from_the_download_attempts(
    tmp_path: Path, attempt: int
) -> None:
    cached = cached_file(tmp_path)
    Path(cached.local_path).unlink()
    (failed,) = upload(tmp_path, [cached], download_attempts(attempt))
    assert isinstance(failed, OutboundRecord)
    info = FailureInfo.from_headers(failed.headers)
    assert (info.attempt, info.stage, info.original_offset) == (attempt + 1, "upload", 5)
    assert failed.topic == Settings().download_retry_topics[attempt]


def test_an_upload_failing_after_the_last_download_retry_reaches_the_dlq(tmp_path: Path) -> None:
    """Before, a successful download dropped the headers: upload failures started at attempt 1
    again, each sending the file back through the downloader, forever."""
    cached = cached_file(tmp_path)
    Path(cached.local_path).write_bytes(b"not the file")
    result, failed = upload(tmp_path, [cached], download_attempts(Settings().max_retries))
    assert isinstance(failed, OutboundRecord)
    assert failed.topic == Settings().claimx_downloads_dlq_topic
    info = FailureInfo.from_headers(failed.headers)
    assert info.attempt == Settings().max_retries + 1
    assert CachedDownload.from_json(failed.value).retry_count == info.attempt
    assert not Path(cached.local_path).exists()  # dead-lettered: no file left in the cache
    # The results stage hears of it: a failed result, the downloaded file's size and sha256.
    assert isinstance(result, OutboundRecord)
    assert result.topic == Settings().claimx_downloads_results_topic
    sent = UploadResult.from_json(result.value)
    assert (sent.status, sent.media_id, sent.project_id, sent.source_event_id) == (
        "failed",
        "9001",
        "77",
        "evt-9",
    )
    assert (sent.bytes, sent.sha256, sent.onelake_path) == (cached.bytes, cached.sha256, None)
    assert sent.error == info.error_message and "does not match" in sent.error


def test_a_permanent_upload_failure_reaches_the_dlq_with_its_result_at_once(
    tmp_path: Path,
) -> None:
    """A cache path outside CACHE_DIR is refused for good on the first attempt."""
    cached = cached_file(tmp_path).model_copy(update={"local_path": "/etc/passwd"})
    result, failed = upload(tmp_path, [cached])
    assert isinstance(result, OutboundRecord) and isinstance(failed, OutboundRecord)
    assert failed.topic == Settings().claimx_downloads_dlq_topic
    assert UploadResult.from_json(result.value).error == "cache file path outside CACHE_DIR"
    assert CachedDownload.from_json(failed.value).retry_count == 1
