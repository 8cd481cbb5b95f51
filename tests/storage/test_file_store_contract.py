"""One suite, every FileStore: the local filesystem and OneLake (over the DFS test server).

The stores come from ``file_store(settings)``, as the upload stage gets them.
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from claimx_flow.config import Settings
from claimx_flow.storage import FileStore, UnsafePathError, media_path
from claimx_flow.storage.base import ContentMismatch, Fingerprint, fingerprint_of
from claimx_flow.storage.locations import file_store
from tests.storage.conftest import LAKEHOUSE, onelake_settings
from tests.storage.dfs_server import DfsServer

T = TypeVar("T")
PATH = media_path("P-100", "M-1", "front door.jpg", "jpg")


@dataclass
class Harness:
    settings: Settings
    root: Path  # where the store's committed files can be seen on disk

    def run(self, scenario: Callable[[FileStore], Awaitable[T]]) -> T:
        """Run ``scenario`` with a fresh store in one event loop, closing the store after."""

        async def main() -> T:
            store = file_store(self.settings)
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())

    def files(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


@pytest.fixture(params=["local", "onelake"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "local":
        settings = Settings(
            claimx_data_dir=tmp_path / "data",
            onelake_workspace_id=None,
            onelake_lakehouse_id=None,
        )
        return Harness(settings, settings.files_dir)
    server: DfsServer = request.getfixturevalue("dfs_server")
    workspace: str = request.getfixturevalue("dfs_workspace")
    settings = onelake_settings(server.endpoint, workspace)
    return Harness(settings, server.stored(workspace, f"{LAKEHOUSE}/Files"))


def test_put_stores_the_bytes_and_reports_the_stored_size(
    harness: Harness, source_file: Path
) -> None:
    stored = harness.run(lambda store: store.put(PATH, source_file))

    assert stored.path == PATH
    assert stored.bytes == source_file.stat().st_size
    assert harness.files() == [PATH]
    assert harness.read(PATH) == source_file.read_bytes()


def test_put_again_overwrites_in_place(harness: Harness, tmp_path: Path) -> None:
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(os.urandom(50_000))
    second.write_bytes(b"shorter")

    async def scenario(store: FileStore) -> list[int]:
        return [(await store.put(PATH, source)).bytes for source in (first, first, second)]

    assert harness.run(scenario) == [50_000, 50_000, 7]
    assert harness.files() == [PATH]
    assert harness.read(PATH) == b"shorter"


def test_put_checks_the_expected_content_before_replacing(
    harness: Harness, tmp_path: Path, source_file: Path
) -> None:
    """A cache file that is not what was downloaded never replaces what the store holds."""
    good = fingerprint_of(source_file)
    altered = tmp_path / "altered.bin"
    altered.write_bytes(source_file.read_bytes()[:-1] + b"!")

    async def scenario(store: FileStore) -> Fingerprint:
        await store.put(PATH, source_file, good)
        with pytest.raises(ContentMismatch) as refused:
            await store.put(PATH, altered, good)
        return refused.value.actual

    actual = harness.run(scenario)
    assert actual == fingerprint_of(altered) and actual != good
    assert harness.files() == [PATH]
    assert harness.read(PATH) == source_file.read_bytes()


def test_put_of_a_missing_source_changes_nothing(harness: Harness, tmp_path: Path) -> None:
    missing = tmp_path / "gone.bin"

    async def scenario(store: FileStore) -> int | None:
        with pytest.raises(FileNotFoundError):
            await store.put(PATH, missing, Fingerprint(10, "0" * 64))
        return await store.size_of(PATH)

    assert harness.run(scenario) is None
    assert harness.files() == []


def test_size_of_tells_stored_from_absent(harness: Harness, source_file: Path) -> None:
    async def scenario(store: FileStore) -> tuple[int | None, int | None]:
        before = await store.size_of(PATH)
        await store.put(PATH, source_file)
        return before, await store.size_of(PATH)

    assert harness.run(scenario) == (None, source_file.stat().st_size)


def test_uri_of_names_what_put_stored(harness: Harness, source_file: Path) -> None:
    async def scenario(store: FileStore) -> tuple[str, str]:
        stored = await store.put(PATH, source_file)
        return stored.uri, store.uri_of(PATH)

    put_uri, uri = harness.run(scenario)
    assert put_uri == uri
    assert uri.endswith("/" + PATH)


def test_empty_file(harness: Harness, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")

    assert harness.run(lambda store: store.put(PATH, empty)).bytes == 0
    assert harness.read(PATH) == b""


def test_large_file_is_streamed_in_bounded_memory(harness: Harness, tmp_path: Path) -> None:
    size = 40 * 1024 * 1024
    large = tmp_path / "video.mp4"
    with large.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))

    async def scenario(store: FileStore) -> tuple[int, int]:
        tracemalloc.start()
        try:
            stored = await store.put(PATH, large)
            return stored.bytes, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    stored_bytes, peak = harness.run(scenario)
    assert stored_bytes == size
    assert peak < size // 3, f"peak Python memory {peak} bytes for a {size}-byte upload"
    assert (harness.root / PATH).stat().st_size == size


@pytest.mark.parametrize("path", ["../outside.bin", "claimx/../../outside.bin", "/tmp/x.bin"])
def test_paths_cannot_leave_the_root(harness: Harness, source_file: Path, path: str) -> None:
    async def scenario(store: FileStore) -> list[str]:
        refused = []
        for call in (
            lambda: store.put(path, source_file),
            lambda: store.size_of(path),
        ):
            with pytest.raises(UnsafePathError):
                await call()
            refused.append("ok")
        with pytest.raises(UnsafePathError):
            store.uri_of(path)
        return refused

    assert harness.run(scenario) == ["ok", "ok"]
    assert harness.files() == []
    assert not (harness.root.parent / "outside.bin").exists()


def test_check_writable_leaves_nothing_behind(harness: Harness) -> None:
    harness.run(lambda store: store.check_writable())

    assert harness.files() == []


def test_flush_after_puts_keeps_every_file(harness: Harness, tmp_path: Path) -> None:
    """What the upload stage does per batch: many puts, then one flush before any commit."""
    sources = []
    for i in range(20):
        source = tmp_path / f"s{i}.bin"
        source.write_bytes(os.urandom(1000 + i))
        sources.append(source)
    paths = [media_path("P-100", f"M-{i}", "f.jpg", "jpg") for i in range(20)]

    async def scenario(store: FileStore) -> None:
        await store.flush()  # nothing stored yet: still fine
        for path, source in zip(paths, sources, strict=True):
            await store.put(path, source, fingerprint_of(source))
        await store.flush()

    harness.run(scenario)
    assert harness.files() == sorted(paths)
    for path, source in zip(paths, sources, strict=True):
        assert harness.read(path) == source.read_bytes()
