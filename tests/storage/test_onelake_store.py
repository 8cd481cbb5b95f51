"""OneLakeFileStore through the real azure SDK, over HTTP, against the DFS test server."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from azure.core.credentials import AzureNamedKeyCredential

from claimx_flow.errors import ErrorCategory
from claimx_flow.lab.process import free_port
from claimx_flow.lab.stack.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from claimx_flow.storage import media_path
from claimx_flow.storage.address import OneLakeAddress
from claimx_flow.storage.base import Fingerprint, StoredFile, fingerprint_of
from claimx_flow.storage.locations import file_store
from claimx_flow.storage.onelake import (
    SHA256_METADATA,
    OneLakeError,
    OneLakeFileStore,
    OneLakeTuning,
)
from tests.storage.conftest import LAKEHOUSE, onelake_settings
from tests.storage.dfs_server import DfsServer

T = TypeVar("T")
PATH = media_path("P-7", "M-42", "roof.mp4", "mp4")
MIB = 1024 * 1024
# No SDK retries unless a test asks: each fault is seen once, and nothing sleeps.
QUICK = OneLakeTuning(chunk_bytes=MIB, retries=0, initial_backoff_s=0.01, backoff_base=0)


def run_store(
    endpoint: str,
    workspace: str,
    scenario: Callable[[OneLakeFileStore], Awaitable[T]],
    *,
    key: str = ACCOUNT_KEY,
    tuning: OneLakeTuning = QUICK,
) -> T:
    async def main() -> T:
        store = OneLakeFileStore(
            OneLakeAddress(endpoint, workspace, LAKEHOUSE),
            AzureNamedKeyCredential(ACCOUNT_NAME, key),
            tuning=tuning,
            secrets=(key,),
        )
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def failed_put(server: DfsServer, workspace: str, source: Path, **options: object) -> OneLakeError:
    async def scenario(store: OneLakeFileStore) -> OneLakeError:
        with pytest.raises(OneLakeError) as caught:
            await store.put(PATH, source)
        return caught.value

    error = run_store(server.endpoint, workspace, scenario, **options)  # type: ignore[arg-type]
    assert ACCOUNT_KEY not in str(error) and ACCOUNT_KEY not in repr(error.__cause__)
    return error


# The protocol -------------------------------------------------------------------------------


def test_upload_is_create_appends_in_chunks_flush_rename(
    dfs_server: DfsServer, dfs_workspace: str, tmp_path: Path
) -> None:
    source = tmp_path / "roof.mp4"
    source.write_bytes(os.urandom(5 * MIB + 123))

    stored = run_store(dfs_server.endpoint, dfs_workspace, lambda s: s.put(PATH, source))

    assert stored.bytes == 5 * MIB + 123
    assert stored.uri == (
        f"abfss://{dfs_workspace}@{ACCOUNT_NAME}.dfs.core.windows.net/{LAKEHOUSE}/Files/{PATH}"
    )
    on_disk = dfs_server.stored(dfs_workspace, f"{LAKEHOUSE}/Files/{PATH}")
    assert on_disk.read_bytes() == source.read_bytes()
    assert dfs_server.calls["PUT file"] == 1
    assert dfs_server.calls["PATCH append"] == 6
    assert dfs_server.calls["PATCH flush"] == 1
    assert dfs_server.calls["PUT rename"] == 1
    assert dfs_server.largest_append <= MIB
    assert dfs_server.files(dfs_workspace) == [f"{LAKEHOUSE}/Files/{PATH}"]  # no staging file
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert dfs_server.metadata(dfs_workspace, f"{LAKEHOUSE}/Files/{PATH}") == {
        SHA256_METADATA: sha256
    }


def test_a_cache_file_replaced_during_the_upload_is_stored_as_it_was_checked(
    dfs_server: DfsServer, dfs_workspace: str, tmp_path: Path
) -> None:
    """A download run again renames a new cache file over the old (``os.replace``) while the
    old one is being uploaded: what is stored must be the bytes whose sha256 the stored file
    carries, and the caller checked. It read the file once for its sha256 and again, by
    path, to send it: the new bytes under the old sha256, which later replays then trust."""
    source = tmp_path / "roof.mp4"
    first = os.urandom(3 * MIB)
    source.write_bytes(first)
    expected = Fingerprint(len(first), hashlib.sha256(first).hexdigest())
    dfs_server.stall_next(1.5, on="HEAD")  # the look for a stored copy, after the check

    async def scenario(store: OneLakeFileStore) -> StoredFile:
        async def replace_meanwhile() -> None:
            await asyncio.sleep(0.5)
            newer = tmp_path / "newer.part"
            newer.write_bytes(os.urandom(3 * MIB))
            os.replace(newer, source)

        stored, _ = await asyncio.gather(store.put(PATH, source, expected), replace_meanwhile())
        return stored

    run_store(dfs_server.endpoint, dfs_workspace, scenario)
    on_disk = dfs_server.stored(dfs_workspace, f"{LAKEHOUSE}/Files/{PATH}")
    assert on_disk.read_bytes() == first
    assert dfs_server.metadata(dfs_workspace, f"{LAKEHOUSE}/Files/{PATH}") == {
        SHA256_METADATA: expected.sha256
    }


def test_stored_size_is_read_back_from_the_service(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    run_store(dfs_server.endpoint, dfs_workspace, lambda s: s.put(PATH, source_file))

    # One look for a stored copy before the upload, and the stored size after the rename.
    assert dfs_server.calls["HEAD"] == 2


def test_settings_with_a_key_give_a_signed_onelake_store(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    async def scenario() -> int | None:
        store = file_store(onelake_settings(dfs_server.endpoint, dfs_workspace))
        try:
            assert isinstance(store, OneLakeFileStore)
            await store.put(PATH, source_file)
            return await store.size_of(PATH)
        finally:
            await store.close()

    assert asyncio.run(scenario()) == source_file.stat().st_size


# Replays never damage a good file ---------------------------------------------------------


def stored_bytes(server: DfsServer, workspace: str) -> bytes:
    return server.stored(workspace, f"{LAKEHOUSE}/Files/{PATH}").read_bytes()


def put_checked(server: DfsServer, workspace: str, source: Path) -> StoredFile:
    """``put`` as the upload stage calls it, with the content it expects."""
    return run_store(
        server.endpoint, workspace, lambda s: s.put(PATH, source, fingerprint_of(source))
    )


def test_a_replay_of_a_stored_file_is_skipped(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    put_checked(dfs_server, dfs_workspace, source_file)
    dfs_server.reset()

    stored = put_checked(dfs_server, dfs_workspace, source_file)

    assert stored.bytes == source_file.stat().st_size
    assert dict(dfs_server.calls) == {"HEAD": 1}  # nothing created, nothing emptied


def test_a_stored_file_of_the_same_size_but_other_content_is_replaced(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(source_file.stat().st_size))
    put_checked(dfs_server, dfs_workspace, other)

    put_checked(dfs_server, dfs_workspace, source_file)

    assert stored_bytes(dfs_server, dfs_workspace) == source_file.read_bytes()


def test_the_store_holds_only_what_carries_its_sha256(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    content = fingerprint_of(source_file)
    put_checked(dfs_server, dfs_workspace, source_file)

    async def scenario(store: OneLakeFileStore) -> list[StoredFile | None]:
        wrong = Fingerprint(content.bytes, "0" * 64)
        return [await store.holds(PATH, content), await store.holds(PATH, wrong)]

    held, not_held = run_store(dfs_server.endpoint, dfs_workspace, scenario)
    assert held is not None and held.bytes == content.bytes
    assert not_held is None


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda s: s.fail_next(500, "InternalError", 10, on="PATCH flush"), id="flush"),
        pytest.param(lambda s: s.drop_next("PATCH append", after_bytes=100_000), id="dropped"),
        pytest.param(lambda s: s.fail_next(503, "ServerBusy", 10, on="PUT rename"), id="rename"),
        pytest.param(lambda s: s.stall_next(3.0, on="PATCH append"), id="stalled"),
    ],
)
def test_an_upload_failing_halfway_leaves_the_good_file_intact(
    dfs_server: DfsServer,
    dfs_workspace: str,
    source_file: Path,
    tmp_path: Path,
    fault: Callable[[DfsServer], None],
) -> None:
    """The replay of an upload whose first copy is good, with a new body (the media fetched
    anew): the upload fails halfway, and the good copy is still there, whole, with nothing
    else beside it."""
    put_checked(dfs_server, dfs_workspace, source_file)
    good = stored_bytes(dfs_server, dfs_workspace)
    newer = tmp_path / "newer.bin"
    newer.write_bytes(os.urandom(2 * MIB + 5))
    fault(dfs_server)

    async def scenario(store: OneLakeFileStore) -> OneLakeError:
        with pytest.raises(OneLakeError) as caught:
            await store.put(PATH, newer, fingerprint_of(newer))
        return caught.value

    impatient = OneLakeTuning(chunk_bytes=MIB, retries=0, read_timeout_s=1.0)
    error = run_store(dfs_server.endpoint, dfs_workspace, scenario, tuning=impatient)

    assert error.category is ErrorCategory.TRANSIENT
    assert stored_bytes(dfs_server, dfs_workspace) == good
    assert dfs_server.files(dfs_workspace) == [f"{LAKEHOUSE}/Files/{PATH}"]  # staging deleted


# Failures and their categories -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServerBusy"), (500, "InternalError"), (429, "TooManyRequests")],
)
def test_outages_and_throttling_are_transient(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path, status: int, code: str
) -> None:
    dfs_server.fail_next(status, code, count=10)

    error = failed_put(dfs_server, dfs_workspace, source_file)

    assert error.category is ErrorCategory.TRANSIENT
    assert error.status == status
    assert str(error) == f"onelake upload {PATH}: HTTP {status} {code}"


def test_the_sdk_retries_a_brief_outage_itself(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    dfs_server.fail_next(503, "ServerBusy", count=1, on="PUT file")
    patient = OneLakeTuning(retries=2, initial_backoff_s=0.01, backoff_base=0, jitter_s=0)

    stored = run_store(
        dfs_server.endpoint, dfs_workspace, lambda s: s.put(PATH, source_file), tuning=patient
    )

    assert stored.bytes == source_file.stat().st_size
    assert dfs_server.calls["PUT file"] == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "InvalidAuthenticationInfo"), (403, "AuthorizationPermissionMismatch")],
)
def test_refusals_are_auth(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path, status: int, code: str
) -> None:
    dfs_server.fail_next(status, code)

    error = failed_put(dfs_server, dfs_workspace, source_file)

    assert error.category is ErrorCategory.AUTH
    assert error.status == status


def test_a_wrong_account_key_is_auth_and_never_shown(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    wrong = "V3Jvbmcga2V5IGZvciB0ZXN0cw=="

    error = failed_put(dfs_server, dfs_workspace, source_file, key=wrong)

    assert error.category is ErrorCategory.AUTH
    assert "HTTP 403 AuthenticationFailed" in str(error)
    assert wrong not in str(error) and wrong not in repr(error.__cause__)


def test_a_missing_workspace_is_permanent(dfs_server: DfsServer, source_file: Path) -> None:
    error = failed_put(dfs_server, "no-such-workspace", source_file)

    assert error.category is ErrorCategory.PERMANENT
    assert str(error).endswith("HTTP 404 FilesystemNotFound")


def test_a_stalled_service_times_out_as_transient(
    dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    dfs_server.stall_next(3.0)
    impatient = OneLakeTuning(retries=0, read_timeout_s=0.5)

    error = failed_put(dfs_server, dfs_workspace, source_file, tuning=impatient)

    assert error.category is ErrorCategory.TRANSIENT
    assert error.status is None


def test_an_unreachable_service_is_transient(source_file: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/{ACCOUNT_NAME}"

    async def scenario(store: OneLakeFileStore) -> OneLakeError:
        with pytest.raises(OneLakeError) as caught:
            await store.put(PATH, source_file)
        return caught.value

    assert run_store(endpoint, "ws", scenario).category is ErrorCategory.TRANSIENT


def test_no_identity_in_the_credential_chain_is_auth(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source_file: Path
) -> None:
    # DefaultAzureCredential with nothing to find: no AZURE_* variables, no az/azd/pwsh on
    # PATH, no token cache in HOME (and no managed identity on a test machine).
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "ONELAKE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = onelake_settings(
        f"https://127.0.0.1:{free_port()}/{ACCOUNT_NAME}", "ws", onelake_account_key=None
    )

    async def scenario() -> OneLakeError:
        store = file_store(settings, QUICK)
        try:
            with pytest.raises(OneLakeError) as caught:
                await store.put(PATH, source_file)
            return caught.value
        finally:
            await store.close()

    error = asyncio.run(scenario())
    assert error.category is ErrorCategory.AUTH
    assert "DefaultAzureCredential failed to retrieve a token" in str(error)


def test_size_of_and_probe_classify_too(dfs_server: DfsServer, dfs_workspace: str) -> None:
    async def scenario(store: OneLakeFileStore) -> list[ErrorCategory]:
        categories = []
        for call in (lambda: store.size_of(PATH), store.check_writable):
            with pytest.raises(OneLakeError) as caught:
                await call()
            categories.append(caught.value.category)
        return categories

    dfs_server.fail_next(503, "ServerBusy")
    dfs_server.fail_next(403, "AuthorizationPermissionMismatch")

    assert run_store(dfs_server.endpoint, dfs_workspace, scenario) == [
        ErrorCategory.TRANSIENT,
        ErrorCategory.AUTH,
    ]


def test_an_identity_granted_only_the_claimx_folder_can_probe_and_upload(
    dfs_server: DfsServer, dfs_workspace: str, tmp_path: Path
) -> None:
    """The runbook grants the pipeline's identity ``Files/claimx/*`` only: the readiness probe
    and every upload (its staging file included) must stay inside it."""
    source = tmp_path / "roof.mp4"
    source.write_bytes(os.urandom(1000))
    dfs_server.writable_under = f"{LAKEHOUSE}/Files/claimx"
    try:
        run_store(dfs_server.endpoint, dfs_workspace, lambda s: s.check_writable())
        run_store(dfs_server.endpoint, dfs_workspace, lambda s: s.put(PATH, source))
        outside = media_path("P-7", "M-43", "roof.mp4", "mp4").replace("claimx/", "other/", 1)

        async def refused(store: OneLakeFileStore) -> OneLakeError:
            with pytest.raises(OneLakeError) as caught:
                await store.put(outside, source)
            return caught.value

        assert run_store(dfs_server.endpoint, dfs_workspace, refused).status == 403
    finally:
        dfs_server.writable_under = None
    assert dfs_server.files(dfs_workspace) == [f"{LAKEHOUSE}/Files/{PATH}"]
