"""``claimx files sweep``: the staging files of uploads killed mid-way, found and deleted, on
OneLake (the real SDK against the DFS test server) and on local disk, and nothing else touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claimx_flow.cli import files_cmd
from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.storage import media_path
from claimx_flow.storage.leftovers import Leftover, staging_name
from claimx_flow.storage.local import LocalFileStore
from claimx_flow.storage.onelake import OneLakeError, _below
from tests.storage.conftest import LAKEHOUSE, onelake_settings
from tests.storage.dfs_server import DfsServer

PATH = media_path("P-7", "M-42", "roof.mp4", "mp4")
OLD = time.time() - 3 * 86400

KILLED_UPLOAD = """
import asyncio, sys
from pathlib import Path
from claimx_flow.config import Settings
from claimx_flow.storage.locations import file_store

async def main():
    await file_store(Settings()).put(sys.argv[1], Path(sys.argv[2]))

asyncio.run(main())
"""


def sweep(settings: Settings, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in settings_env(settings).items() if k not in os.environ or k == "PATH"}
    result = CliRunner().invoke(files_cmd.app, ["sweep", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def settings(clean_env: pytest.MonkeyPatch, dfs_server: DfsServer, dfs_workspace: str) -> Settings:
    return onelake_settings(dfs_server.endpoint, dfs_workspace)


def kill_an_upload(settings: Settings, dfs_server: DfsServer, source: Path) -> None:
    """A real upload process, SIGKILLed once its staging file exists and its first append
    hangs: what a lost node or an out-of-memory kill leaves."""
    dfs_server.stall_next(60, on="PATCH append")
    upload = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOAD, PATH, str(source)], env=settings_env(settings)
    )
    try:
        deadline = time.monotonic() + 30
        while dfs_server.calls["PATCH append"] == 0:
            assert upload.poll() is None and time.monotonic() < deadline, "the upload never began"
            time.sleep(0.05)
    finally:
        upload.send_signal(signal.SIGKILL)
        upload.wait(10)


def age(dfs_server: DfsServer, workspace: str, relative: str, when: float) -> None:
    os.utime(dfs_server.stored(workspace, f"{LAKEHOUSE}/Files/{relative}"), (when, when))


def test_a_killed_uploads_staging_file_is_swept_and_nothing_else(
    settings: Settings, dfs_server: DfsServer, dfs_workspace: str, source_file: Path
) -> None:
    kill_an_upload(settings, dfs_server, source_file)
    (staged,) = [
        f.removeprefix(f"{LAKEHOUSE}/Files/")
        for f in dfs_server.files(dfs_workspace)
        if f.endswith(".part")
    ]
    age(dfs_server, dfs_workspace, staged, OLD)
    kept = {  # a stored media file, a fresh staging file, hidden files of other shapes
        PATH: OLD,
        f"claimx/P-7/media/{staging_name('M-43_wall.jpg')}": time.time(),
        "claimx/P-7/media/.notes.part": OLD,
        "claimx/P-7/media/M-44_x.0123456789abcdef.part": OLD,
    }
    for relative, when in kept.items():
        stored = dfs_server.stored(dfs_workspace, f"{LAKEHOUSE}/Files/{relative}")
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(b"kept")
        os.utime(stored, (when, when))
    dfs_server.page_size = 2  # the listing has to follow its continuation pages

    code, out = sweep(settings, "--dry-run", "-o", "json")
    assert code == 0, out
    plan = json.loads(out)
    assert [item["path"] for item in plan["leftovers"]] == [staged]
    assert plan["leftovers"][0]["target"] == PATH
    assert plan["scanned"] >= 5 and plan["removed"] == []

    code, out = sweep(settings, "--yes")
    assert code == 0, out
    assert "deleted 1 staging file(s)" in out
    remaining = {f.removeprefix(f"{LAKEHOUSE}/Files/") for f in dfs_server.files(dfs_workspace)}
    assert remaining == set(kept)

    code, out = sweep(settings, "--yes")
    assert code == 1 and "nothing to sweep" in out


def test_a_sweep_asks_and_never_races_an_upload(
    settings: Settings, dfs_server: DfsServer, dfs_workspace: str
) -> None:
    relative = f"claimx/P-7/media/{staging_name('M-42_roof.mp4')}"
    stored = dfs_server.stored(dfs_workspace, f"{LAKEHOUSE}/Files/{relative}")
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"half")
    age(dfs_server, dfs_workspace, relative, time.time() - 2 * 3600)

    code, out = sweep(settings, "--older-than", "90m")  # no terminal to ask on, no --yes
    assert code == 2 and "pass --yes" in out and "1 staging file(s)" in out
    code, out = sweep(settings, "--older-than", "30m", "--yes")
    assert code == 2 and "UPLOAD_TIMEOUT_SECONDS plus an hour" in out
    code, out = sweep(settings, "--older-than", "3h", "--yes")  # it is 2 h old
    assert code == 1
    assert stored.exists()


def test_a_refused_listing_is_one_red_line(settings: Settings, dfs_server: DfsServer) -> None:
    dfs_server.fail_next(403, "AuthorizationPermissionMismatch", on="GET filesystem")
    code, out = sweep(settings, "--dry-run")
    assert code == 2
    assert "error: onelake list claimx" in out and "Traceback" not in out
    assert settings.onelake_account_key is not None
    assert settings.onelake_account_key.get_secret_value() not in out


def test_a_refused_delete_stops_the_sweep_and_names_what_is_left(
    settings: Settings, dfs_server: DfsServer, dfs_workspace: str
) -> None:
    """A refusal (a token expired, a role removed) would refuse every next file too, each after
    the SDK's retries: the sweep stops at the first and says how many are left."""
    for target in ("M-42_roof.mp4", "M-43_wall.jpg", "M-44_door.jpg"):
        relative = f"claimx/P-7/media/{staging_name(target)}"
        stored = dfs_server.stored(dfs_workspace, f"{LAKEHOUSE}/Files/{relative}")
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(b"half")
        age(dfs_server, dfs_workspace, relative, OLD)
    dfs_server.fail_next(403, "AuthorizationPermissionMismatch", on="DELETE")
    code, out = sweep(settings, "--yes")
    assert code == 2
    assert "3 staging file(s) not deleted (stopped: the store refuses or is down)" in out
    assert dfs_server.calls["DELETE"] == 1
    assert len([f for f in dfs_server.files(dfs_workspace) if f.endswith(".part")]) == 3


def test_a_span_past_the_calendar_is_a_bad_parameter(settings: Settings) -> None:
    code, out = sweep(settings, "--older-than", "99999999d")
    assert code == 2 and "reaches before year 1" in out


def test_a_listed_name_outside_the_media_root_is_refused() -> None:
    """The service may spell the lakehouse in another case; a name under another folder is
    an error, never a path guessed at and deleted."""
    root = "Lakehouse-1/Files/claimx"
    assert _below(root, "lakehouse-1/files/claimx/P-7/.a.0123456789abcdef.part") == (
        "P-7/.a.0123456789abcdef.part"
    )
    with pytest.raises(OneLakeError, match="outside it"):
        _below(root, "other/Files/claimx/P-7/.a.0123456789abcdef.part")


def test_local_leftovers_are_listed_and_deleted_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "files"
    media = root / "claimx/P-7/media"
    media.mkdir(parents=True)
    (media / "M-42_roof.mp4").write_bytes(b"stored")
    left = media / staging_name("M-42_roof.mp4")
    left.write_bytes(b"half")
    (media / ".notes.part").write_bytes(b"not ours")
    (root / staging_name("outside.jpg")).write_bytes(b"not under claimx/")
    store = LocalFileStore(root)

    (found,) = asyncio.run(store.leftovers(datetime.now(UTC) + timedelta(seconds=5)))
    assert found.path == left.relative_to(root).as_posix() and found.bytes == 4
    assert asyncio.run(store.leftovers(datetime.now(UTC) - timedelta(hours=1))) == []
    assert asyncio.run(store.discard(found)) is True
    assert asyncio.run(store.discard(found)) is False  # gone meanwhile
    for path in ("claimx/P-7/media/M-42_roof.mp4", staging_name("outside.jpg")):
        with pytest.raises(ValueError, match="not a staging file"):
            asyncio.run(store.discard(Leftover(path, 1, datetime.now(UTC))))
    assert sorted(p.name for p in media.iterdir()) == [".notes.part", "M-42_roof.mp4"]


def test_an_upload_linking_an_old_cache_file_is_in_flight_not_left(tmp_path: Path) -> None:
    """The local store hard-links the cache file to its staging name: the link keeps the
    download's mtime, days old for a backlog, while the upload began just now."""
    cached = tmp_path / "cache" / "42.bin"
    cached.parent.mkdir()
    cached.write_bytes(b"downloaded days ago")
    os.utime(cached, (OLD, OLD))
    media = tmp_path / "files/claimx/P-7/media"
    media.mkdir(parents=True)
    os.link(cached, media / staging_name("M-42_roof.mp4"))  # what store_atomically does first
    store = LocalFileStore(tmp_path / "files")
    assert asyncio.run(store.leftovers(datetime.now(UTC) - timedelta(hours=1))) == []


def test_a_missing_local_files_folder_is_one_red_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out = sweep(Settings(claimx_data_dir=tmp_path / "nowhere"), "--dry-run")
    assert code == 2 and "no files folder at" in out
