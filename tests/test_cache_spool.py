"""A download's bytes reach the cache whole and hashed, or leave nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from claimx_flow.media.cache_spool import SPILL_BYTES, CacheSpool


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
