"""One download's bytes on their way into the cache, with their sha256.

Chunks are held in memory until ``SPILL_BYTES`` have arrived, then written by a worker thread,
so a large file never blocks the event loop that streams twenty downloads at once. A small file
(at most ``INLINE_BYTES``) is hashed, written by one ``os.writev`` and renamed right on the loop
when its body ends. Measured with 64 KiB files, a thread hand-off per file cost more than the
~100 µs of system calls it moved (370 µs of CPU per download inline against 700 µs through the
thread pool, the loop thread waiting to get the GIL back after every socket call); and with a
buffered file object (whose ``open`` makes extra system calls) ``download_to_cache`` cost
329-353 µs a file against 307-331 µs with the bare calls, alternated.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

SPILL_BYTES = 1024 * 1024
INLINE_BYTES = 256 * 1024
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16)
"""Buffers one ``writev`` takes: a body may arrive in more chunks than that (one byte each)."""


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Every byte of ``chunks`` to ``fd`` (a write may take fewer than it was given)."""
    pending = [memoryview(chunk) for chunk in chunks if chunk]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        if not written:
            raise OSError(errno.EIO, "a write took no bytes")
        while pending and written >= len(pending[0]):
            written -= len(pending.pop(0))
        if pending and written:
            pending[0] = pending[0][written:]


class CacheSpool:
    """Bytes for ``partial``, renamed to the cache file by :meth:`commit`; else :meth:`discard`.

    ``committed`` says whether the rename happened: a download cancelled while its commit ran
    in a thread may still have put its file in place, and only it knows the file is its own.
    """

    def __init__(self, partial: Path) -> None:
        self.partial = partial
        self.size = 0
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._file: BinaryIO | None = None
        self._digest = hashlib.sha256()
        # A cancelled download may leave a write running in its thread: discard waits for it.
        self._lock = threading.Lock()
        self._discarded = False
        self.committed = False

    async def add(self, chunk: bytes) -> None:
        self._held.append(chunk)
        self._held_bytes += len(chunk)
        self.size += len(chunk)
        if self._held_bytes >= SPILL_BYTES:
            await asyncio.to_thread(self._write_held)

    async def commit(self, target: Path) -> str:
        """Write what is held, close, rename onto ``target``; the sha256 of all the bytes."""
        if self._file is None and self._held_bytes <= INLINE_BYTES:
            return self._commit_small(target)
        return await asyncio.to_thread(self._commit, target)

    def discard(self) -> None:
        """Drop the partial file, if any was written (blocking, briefly); after this no commit
        can happen, and ``committed`` is final. It raises nothing: the close flushes what is
        buffered, which fails again on a full volume, and the download's own error is the one
        that says what happened."""
        with self._lock:
            self._discarded = True
            self._held.clear()
            if self._file is not None:
                file, self._file = self._file, None
                with suppress(OSError):
                    file.close()  # closes the descriptor even when the flush fails
                with suppress(OSError):  # a read-only volume: a later start sweeps it
                    self.partial.unlink(missing_ok=True)

    def _write_held(self) -> None:
        with self._lock:
            if self._discarded:  # a write queued before its download was cancelled
                return
            if self._file is None:
                try:
                    self._file = self.partial.open("wb")
                except FileNotFoundError:  # the cache folder went away (or never was)
                    self.partial.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.partial.open("wb")
            for chunk in self._held:
                self._digest.update(chunk)
                self._file.write(chunk)
            self._held.clear()
            self._held_bytes = 0

    def _commit_small(self, target: Path) -> str:
        """``_commit`` for a file held whole in memory: one open, vectored writes (one unless
        the body came in more than ``_IOV_MAX`` chunks), one close, without Python's buffered
        file object (the loop thread runs this per file)."""
        with self._lock:
            if self._discarded:
                raise FileNotFoundError(f"{self.partial} was discarded")
            for chunk in self._held:
                self._digest.update(chunk)
            try:
                fd = os.open(self.partial, _CREATE, 0o666)
            except FileNotFoundError:  # the cache folder went away (or never was)
                self.partial.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.partial, _CREATE, 0o666)
            try:
                try:
                    _write_all(fd, self._held)
                finally:
                    os.close(fd)  # may report a write error itself (network volumes)
            except BaseException:
                self.partial.unlink(missing_ok=True)
                raise
            self._held.clear()
            return self._place(target)

    def _commit(self, target: Path) -> str:
        self._write_held()
        with self._lock:
            if self._file is None:
                raise FileNotFoundError(f"{self.partial} was discarded")
            self._file.close()
            self._file = None
            return self._place(target)

    def _place(self, target: Path) -> str:
        """Rename the written partial file onto ``target`` (under the lock); the sha256."""
        try:
            os.replace(self.partial, target)
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise
        self.committed = True
        return self._digest.hexdigest()
