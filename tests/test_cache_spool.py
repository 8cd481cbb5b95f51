"""A download's bytes reach the cache whole and hashed, or leave nothing behind."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimx_flow.media.cache_spool import INLINE_BYTES, SPILL_BYTES, CacheSpool, _write_all


def _feed(spool: CacheSpool, body: bytes, chunk: int = 256 * 1024) -> None:
    async def feed() -> None:
        for start in range(0, len(body), chunk):
            await spool.add(body[start : start + chunk])

    asyncio.run(feed())


def test_small_and_large_bodies_land_whole_with_their_sha256(tmp_path: Path) -> None:
    for size in (0, 1, 64 * 1024, SPILL_BYTES * 3 + 17):
        body = os.urandom(size)
        target = tmp_path / f"{size}.bin"
        spool = CacheSpool(tmp_path / "sub" / f"{size}.bin.run.part")  # folder made on demand
        _feed(spool, body)

        digest = asyncio.run(spool.commit(target))

        assert target.read_bytes() == body
        assert digest == hashlib.sha256(body).hexdigest()
        assert spool.size == size
        assert not spool.partial.exists()


def test_a_spilled_download_that_fails_leaves_no_partial_file(tmp_path: Path) -> None:
    spool = CacheSpool(tmp_path / "x.bin.run.part")
    _feed(spool, os.urandom(SPILL_BYTES + 1))
    assert spool.partial.exists()  # spilled to disk mid-stream

    spool.discard()

    assert list(tmp_path.iterdir()) == []


def test_a_write_that_runs_after_the_discard_writes_nothing(tmp_path: Path) -> None:
    spool = CacheSpool(tmp_path / "x.bin.run.part")
    _feed(spool, b"held in memory")
    spool.discard()

    spool._write_held()  # what a write queued before a cancellation would do

    assert list(tmp_path.iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=INLINE_BYTES),
    cuts=st.lists(st.integers(0, INLINE_BYTES), max_size=6),
)
def test_a_small_body_in_any_chunks_lands_whole_from_the_loop(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, cuts: list[int]
) -> None:
    """A file of at most ``INLINE_BYTES`` is written by one vectored write of its chunks."""
    folder = tmp_path_factory.mktemp("small")
    spool = CacheSpool(folder / "x.bin.run.part")
    edges = sorted({0, len(body), *(cut for cut in cuts if cut < len(body))})

    async def feed_and_commit() -> str:
        for start, end in itertools.pairwise(edges):
            await spool.add(body[start:end])
        return await spool.commit(folder / "x.bin")

    digest = asyncio.run(feed_and_commit())

    assert (folder / "x.bin").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == ["x.bin"]


@given(
    chunks=st.lists(st.binary(max_size=300), max_size=8),
    most=st.integers(1, 700),
)
def test_every_byte_is_written_when_the_kernel_takes_fewer_than_it_was_given(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes], most: int
) -> None:
    """A regular file does not short-write on demand, so ``os.writev`` is wrapped to take at
    most ``most`` bytes a call, as the kernel may (a signal, a full pipe, a quota)."""
    target = tmp_path_factory.mktemp("short") / "x"
    writev = os.writev

    def short(fd: int, buffers: list[memoryview]) -> int:
        data = b"".join(bytes(b) for b in buffers)[:most]
        return writev(fd, [data])

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with mock.patch.object(os, "writev", short):
            _write_all(fd, chunks)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"".join(chunks)


def test_a_small_body_in_more_chunks_than_one_write_takes_lands_whole(tmp_path: Path) -> None:
    """A media host may trickle a body a byte at a time: more buffers than ``writev`` accepts
    (IOV_MAX, 1,024 on Linux) must still make one whole file, not a failed download."""
    body = os.urandom(5000)
    spool = CacheSpool(tmp_path / "x.bin.run.part")
    _feed(spool, body, chunk=1)

    digest = asyncio.run(spool.commit(tmp_path / "x.bin"))

    assert (tmp_path / "x.bin").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()


def test_a_small_commit_that_cannot_write_leaves_nothing(tmp_path: Path) -> None:
    spool = CacheSpool(tmp_path / "x.bin.run.part")
    _feed(spool, b"held in memory")

    def full(fd: int, buffers: list[memoryview]) -> int:  # a full volume, on demand
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(os, "writev", full), pytest.raises(OSError):
        asyncio.run(spool.commit(tmp_path / "x.bin"))
    assert list(tmp_path.iterdir()) == []
    assert not spool.committed


def test_a_small_commit_after_the_discard_writes_nothing(tmp_path: Path) -> None:
    spool = CacheSpool(tmp_path / "x.bin.run.part")
    _feed(spool, b"held in memory")
    spool.discard()

    with pytest.raises(FileNotFoundError):
        asyncio.run(spool.commit(tmp_path / "x.bin"))
    assert list(tmp_path.iterdir()) == []


def test_a_full_volume_mid_download_leaves_nothing_and_the_discard_does_not_raise(
    tmp_path: Path,
) -> None:
    """A volume that fills while a large file spills (``/dev/full``: every write fails with
    ENOSPC): the write fails, and so would the close that flushes what is buffered. The
    discard must still remove the partial file and raise nothing, or its error replaces the
    download's transient one ("cache write failed") and the file is dead-lettered for good."""
    partial = tmp_path / "x.bin.run.part"
    partial.symlink_to("/dev/full")
    spool = CacheSpool(partial)

    with pytest.raises(OSError) as full:
        _feed(spool, os.urandom(SPILL_BYTES + 1), chunk=4096)  # buffered: some bytes held
    assert full.value.errno == errno.ENOSPC

    spool.discard()

    assert list(tmp_path.iterdir()) == []
    assert not spool.committed
