"""The upload stage on a OneLake store: stored files become rows, failures route by category."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.lab.stack.azurite import ACCOUNT_KEY
from claimx_flow.models import CachedDownload, FailureInfo
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.stages.upload import UploadCompletion, UploadOutput, UploadStage
from claimx_flow.storage.locations import file_store
from claimx_flow.storage.onelake import OneLakeTuning
from tests.storage.conftest import LAKEHOUSE, onelake_settings
from tests.storage.dfs_server import DfsServer

QUICK = OneLakeTuning(retries=0)


def cached_download(source: Path) -> CachedDownload:
    data = source.read_bytes()
    return CachedDownload(
        media_id="M-9",
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
    settings = onelake_settings(
        server.endpoint, workspace, cache_dir=Path(cached.local_path).parent
    )
    record = KafkaRecord("claimx.downloads.cached", 0, 7, None, b"M-9", cached.to_json())

    async def main() -> UploadOutput:
        stage = UploadStage(
            settings,
            FailureRouter.for_stage(settings, "upload", "claimx.downloads.dlq"),
            file_store(settings, QUICK),
        )
        try:
            [output] = await stage.process([(record, cached)])
            return output
        finally:
            await stage.store.close()

    return asyncio.run(main())


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
    assert output.topic == "claimx.downloads.dlq"
    info = FailureInfo.from_headers(output.headers)
    assert info.error_category is category
    assert info.error_class == "OneLakeError"
    assert f"HTTP {status} {code}" in info.error_message
    assert all(ACCOUNT_KEY.encode() not in value for _, value in output.headers)
