"""The local store's two ways to store a cache file: a hard link on one filesystem, a copy
across filesystems — the same content checks and the same all-or-nothing result either way."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from claimx_flow.storage import LocalFileStore, media_path
from claimx_flow.storage.base import ContentMismatch, fingerprint_of

PATH = media_path("P-7", "M-7", "roof.jpg", "jpg")
SHM = Path("/dev/shm")


def _store(root: Path, source: Path) -> Path:
    store = LocalFileStore(root)

    async def put() -> None:
        await store.put(PATH, source, fingerprint_of(source))
        await store.flush()

    asyncio.run(put())
    return root / PATH


def test_same_filesystem_links_and_outlives_the_cache_file(tmp_path: Path) -> None:
    source = tmp_path / "cache" / "M-7.bin"
    source.parent.mkdir()
    content = os.urandom(70_000)
    source.write_bytes(content)

    stored = _store(tmp_path / "files", source)

    assert stored.stat().st_ino == source.stat().st_ino  # no bytes were copied
    source.unlink()  # the cache release after the commit
    assert stored.read_bytes() == content
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no temporary left


@pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm, a second filesystem")
def test_another_filesystem_is_copied(tmp_path: Path) -> None:
    source = SHM / f"claimx-test-{os.getpid()}.bin"
    if os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem here")
    content = os.urandom(70_000)
    source.write_bytes(content)
    try:
        stored = _store(tmp_path / "files", source)
        assert stored.stat().st_ino != source.stat().st_ino
        assert stored.read_bytes() == content
    finally:
        source.unlink(missing_ok=True)


def test_a_link_in_the_cache_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not media")
    source = tmp_path / "cache" / "M-7.bin"
    source.parent.mkdir()
    source.symlink_to(secret)
    store = LocalFileStore(tmp_path / "files")

    with pytest.raises(OSError):
        asyncio.run(store.put(PATH, source, fingerprint_of(secret)))
    assert not (tmp_path / "files" / PATH).exists()
    assert list((tmp_path / "files" / PATH).parent.iterdir()) == []


def test_a_changed_cache_file_is_refused_and_the_stored_file_kept(tmp_path: Path) -> None:
    source = tmp_path / "cache" / "M-7.bin"
    source.parent.mkdir()
    source.write_bytes(b"first download")
    stored = _store(tmp_path / "files", source)
    expected = fingerprint_of(source)
    source.unlink()
    source.write_bytes(b"something else")  # a new inode under the same name

    with pytest.raises(ContentMismatch):
        asyncio.run(LocalFileStore(tmp_path / "files").put(PATH, source, expected))
    assert stored.read_bytes() == b"first download"
