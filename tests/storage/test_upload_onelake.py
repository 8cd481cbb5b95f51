"""The upload stage on a OneLake store: stored files become rows, failures route by category,
each upload keeps its own deadline, and a replay of a stored file is skipped."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.lab.stack.azurite import ACCOUNT_KEY
from claimx_flow.models import CachedDownload, FailureInfo
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.routing.tiers import download_ladder
from claimx_flow.stages.upload import UploadCompletion, UploadOutput, UploadStage
from claimx_flow.storage.locations import file_store
from claimx_flow.storage.onelake import OneLakeTuning
from tests.storage.conftest import LAKEHOUSE, onelake_settings
from tests.storage.dfs_server import DfsServer

QUICK = OneLakeTuning(retries=0)


def cached_download(source: Path, media_id: str = "M-9") -> CachedDownload:
    data = source.read_bytes()
    return CachedDownload(
        media_id=media_id,
        project_id="P-3",
        download_url="https://claimx.example/media/9?sig=abc",
        file_name="kitchen.jpg",
        file_type="jpg",
        source_event_id="E-1",
        local_path=str(source),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type="image/jpeg",
        downloaded_at="2026-01-02T03:04:05Z",
    )


def upload(server: DfsServer, workspace: str, cached: CachedDownload) -> UploadOutput:
    [output] = upload_batch(server, workspace, [cached])
    return output


def upload_batch(
    server: DfsServer, workspace: str, batch: list[CachedDownload], **overrides: object
) -> list[UploadOutput]:
    settings = onelake_settings(
        server.endpoint, workspace, cache_dir=Path(batch[0].local_path).parent, **overrides
    )
    records = [
        KafkaRecord("claimx.downloads.cached", 0, i, None, c.kafka_key, c.to_json())
        for i, c in enumerate(batch)
    ]

    async def main() -> list[UploadOutput]:
        stage = UploadStage(
            settings,
            FailureRouter.for_stage(
                settings, "upload", "claimx.downloads.dlq", download_ladder(settings)
            ),
            file_store(settings, QUICK),
        )
        try:
            return await stage.process(list(zip(records, batch, strict=True)))
        finally:
            await stage.store.close()

    return asyncio.run(main())


def cache_files(tmp_path: Path, count: int) -> list[CachedDownload]:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    out = []
    for i in range(count):
        path = cache / f"M-{i}.0123456789abcdef.bin"
        path.write_bytes(os.urandom(200_000))
        out.append(cached_download(path, media_id=f"M-{i}"))
    return out


def test_an_uploaded_file_becomes_an_attachment_row(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    output = upload(dfs_server, dfs_workspace, cached_download(source_file))

    assert isinstance(output, UploadCompletion)
    path = "claimx/P-3/media/M-9_kitchen.jpg"
    assert output.row["onelake_path"].endswith(
        f"@devstoreaccount1.dfs.core.windows.net/{LAKEHOUSE}/Files/{path}"
    )
    stored = dfs_server.stored(dfs_workspace, f"{LAKEHOUSE}/Files/{path}")
    assert stored.read_bytes() == source_file.read_bytes()


@pytest.mark.parametrize(
    ("status", "code", "category"),
    [
        (503, "ServerBusy", ErrorCategory.TRANSIENT),
        (403, "AuthorizationPermissionMismatch", ErrorCategory.AUTH),
    ],
)
def test_onelake_failures_route_by_category(
    dfs_server: DfsServer,
    dfs_workspace: str,
    source_file: Path,
    status: int,
    code: str,
    category: ErrorCategory,
) -> None:
    dfs_server.fail_next(status, code, count=5)

    output = upload(dfs_server, dfs_workspace, cached_download(source_file))

    assert isinstance(output, OutboundRecord)
    assert output.topic == "claimx.downloads.pending.retry.300s"  # both wait in the first tier
    info = FailureInfo.from_headers(output.headers)
    assert info.error_category is category
    assert info.error_class == "OneLakeError"
    assert f"HTTP {status} {code}" in info.error_message
    assert all(ACCOUNT_KEY.encode() not in value for _, value in output.headers)


def test_a_stalled_upload_times_out_alone(
    dfs_server: DfsServer, dfs_workspace: str, tmp_path: Path
) -> None:
    """One upload's peer stops answering: that upload is a transient failure after its own
    deadline, and the rest of the batch is stored and kept."""
    batch = cache_files(tmp_path, 3)
    dfs_server.stall_next(5.0, on="PATCH append")

    started = time.monotonic()
    outputs = upload_batch(dfs_server, dfs_workspace, batch, upload_timeout_seconds=1.0)

    assert time.monotonic() - started < 4.0
    failed = [o for o in outputs if isinstance(o, OutboundRecord)]
    done = [o for o in outputs if isinstance(o, UploadCompletion)]
    assert (len(failed), len(done)) == (1, 2)
    info = FailureInfo.from_headers(failed[0].headers)
    assert info.error_category is ErrorCategory.TRANSIENT
    assert info.error_message == "upload timed out after 1s"
    assert failed[0].topic == Settings().download_retry_topics[0]
    assert not Path(CachedDownload.from_json(failed[0].value).local_path).exists()
    assert all(d.cache_file is not None and d.cache_file.exists() for d in done)


def test_the_upload_deadline_counts_from_the_slot_not_the_queue(
    dfs_server: DfsServer, dfs_workspace: str, tmp_path: Path
) -> None:
    """Four uploads of about 0.4 s through one slot with a 1 s deadline all land."""
    batch = cache_files(tmp_path, 4)
    dfs_server.stall_next(0.4, count=4, on="PUT file")

    started = time.monotonic()
    outputs = upload_batch(
        dfs_server, dfs_workspace, batch, upload_timeout_seconds=1.0, upload_concurrency=1
    )

    assert all(isinstance(o, UploadCompletion) for o in outputs), outputs
    assert time.monotonic() - started >= 1.6


def test_a_replayed_upload_of_a_stored_file_is_completed_without_writing(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    cached = cached_download(source_file)
    assert isinstance(upload(dfs_server, dfs_workspace, cached), UploadCompletion)
    dfs_server.reset()

    again = upload(dfs_server, dfs_workspace, cached)

    assert isinstance(again, UploadCompletion)
    assert again.row["sha256"] == cached.sha256
    assert dfs_server.calls["PUT file"] == 0 and dfs_server.calls["PUT rename"] == 0
