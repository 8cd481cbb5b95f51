"""Files on the local filesystem under ``CLAIMX_DATA_DIR/files`` (the embedded default)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from claimx_flow.storage.base import (
    READ_CHUNK_BYTES,
    ContentMismatch,
    Fingerprint,
    StoredFile,
    read_fingerprint,
)
from claimx_flow.storage.leftovers import Leftover, checked, is_staging_name, staging_name
from claimx_flow.storage.paths import MEDIA_ROOT, UnsafePathError, probe_path


class LocalFileStore:
    """Writes through a temporary file and an atomic rename: a reader never sees half a file,
    and a write that fails (a full disk, a content mismatch) leaves what was stored as it was.

    Durability comes per batch, not per file: ``flush`` syncs the whole filesystem once
    (``syncfs``), which costs one journal commit where an ``fsync`` per file cost one each and
    slowed every other write and delete on the disk. Nothing may count a file as stored before
    ``flush`` has returned.

    The confinement check is lexical (no ``realpath`` per file, which costs a system call per
    path component): paths come from :func:`media_path`, and the store's own root is trusted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._prefix = str(self.root) + os.sep

    def _target(self, path: str) -> Path:
        target = os.path.normpath(os.path.join(self.root, path))
        if not target.startswith(self._prefix):
            raise UnsafePathError(f"path {path!r} escapes the storage root")
        return Path(target)

    async def put(self, path: str, source: Path, expected: Fingerprint | None = None) -> StoredFile:
        target = self._target(path)
        size = await asyncio.to_thread(store_atomically, source, target, expected)
        return StoredFile(path=path, uri=target.as_uri(), bytes=size)

    def uri_of(self, path: str) -> str:
        return self._target(path).as_uri()

    async def size_of(self, path: str) -> int | None:
        target = self._target(path)
        try:
            return target.stat().st_size
        except FileNotFoundError:
            return None

    async def holds(self, path: str, expected: Fingerprint) -> StoredFile | None:
        target = self._target(path)
        actual = await asyncio.to_thread(_fingerprint_if_sized, target, expected.bytes)
        if actual != expected:
            return None
        return StoredFile(path=path, uri=target.as_uri(), bytes=expected.bytes)

    async def flush(self) -> None:
        await asyncio.to_thread(sync_filesystem, self.root)

    async def check_writable(self) -> None:
        probe = self.root / probe_path()
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()

    async def leftovers(
        self, before: datetime, scanned: Callable[[int], None] = lambda count: None
    ) -> list[Leftover]:
        return await asyncio.to_thread(_leftovers, self.root, before.timestamp(), scanned)

    async def discard(self, leftover: Leftover) -> bool:
        try:
            self._target(checked(leftover).path).unlink()
        except FileNotFoundError:
            return False
        return True

    async def close(self) -> None:
        return None


def store_atomically(source: Path, target: Path, expected: Fingerprint | None) -> int:
    """``source``'s content at ``target``, checked against ``expected``, all or nothing.

    On one filesystem (the embedded default keeps the cache and the store under one data
    directory) the file is hard-linked rather than copied: no bytes are written, and releasing
    the cache file later frees no blocks. The check reads the linked inode itself, so a cache
    file replaced meanwhile cannot slip in unchecked. Elsewhere it is copied.
    """
    temporary = _temporary(target)
    try:
        try:
            os.link(source, temporary, follow_symlinks=False)
        except FileNotFoundError:  # the first file of a project: its folder comes first
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, temporary, follow_symlinks=False)  # a missing source raises here
    except OSError as exc:
        if exc.errno not in _CANNOT_LINK:
            raise
        return _copy_atomically(source, target, expected)
    try:
        # O_NOFOLLOW: a link in the cache is never followed to something else's content.
        with open(os.open(temporary, os.O_RDONLY | os.O_NOFOLLOW), "rb") as linked:
            actual = read_fingerprint(linked)
        if expected is not None and actual != expected:
            raise ContentMismatch(actual)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return actual.bytes


def _copy_atomically(source: Path, target: Path, expected: Fingerprint | None) -> int:
    """Copy ``source`` to ``target`` through a temporary file, checking ``expected`` on the
    way: the source is read once, and a mismatch never reaches ``target``."""
    # O_NOFOLLOW: a link in the cache is never followed to something else's content.
    with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW), "rb") as src:
        temporary = _temporary(target)
        try:
            dst = temporary.open("wb")
        except FileNotFoundError:  # the first file of a project: its folder comes first
            target.parent.mkdir(parents=True, exist_ok=True)
            dst = temporary.open("wb")
        try:
            with dst:
                digest, size = hashlib.sha256(), 0
                while chunk := src.read(READ_CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                if expected is not None:
                    actual = Fingerprint(size, digest.hexdigest())
                    if actual != expected:
                        raise ContentMismatch(actual)
                dst.flush()
                stored = os.fstat(dst.fileno()).st_size
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    return stored


def _fingerprint_if_sized(target: Path, size: int) -> Fingerprint | None:
    """``target``'s fingerprint if it exists with ``size`` bytes (read only then; blocking)."""
    try:
        descriptor = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with open(descriptor, "rb") as stored:
        if os.fstat(stored.fileno()).st_size != size:
            return None
        return read_fingerprint(stored)


def _temporary(target: Path) -> Path:
    return target.with_name(staging_name(target.name))


def _leftovers(root: Path, before: float, scanned: Callable[[int], None]) -> list[Leftover]:
    """Staging files under the media root last changed before ``before`` (a Unix time).

    Changed, not written: an upload hard-links its cache file to the staging name, and the
    link keeps the cache file's (download's) mtime. ``link`` sets the ctime, so the later of
    the two is when the upload began at the earliest.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"no files folder at {root} (CLAIMX_DATA_DIR)")

    def unreadable(error: OSError) -> None:
        raise error

    found: list[Leftover] = []
    count = 0
    if not (root / MEDIA_ROOT).is_dir():
        return found  # nothing uploaded yet
    for folder, _, names in os.walk(root / MEDIA_ROOT, onerror=unreadable):
        count += len(names)
        scanned(count)
        for name in names:
            if not is_staging_name(name):
                continue
            try:
                stat = os.stat(os.path.join(folder, name), follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed or deleted since it was listed
            changed = max(stat.st_mtime, stat.st_ctime)
            if changed < before:
                relative = os.path.relpath(os.path.join(folder, name), root)
                modified = datetime.fromtimestamp(changed, UTC)
                found.append(Leftover(relative.replace(os.sep, "/"), stat.st_size, modified))
    return found


# Why a hard link can fail where a copy works: another filesystem, no links there, too many.
_CANNOT_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOSYS}

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
# Python's os module has sync() (every filesystem) but not syncfs() (one): Linux's libc has it.
_syncfs = getattr(_libc, "syncfs", None)


def sync_filesystem(root: Path) -> None:
    """Everything written under ``root`` so far is on disk when this returns (blocking)."""
    if _syncfs is None:
        os.sync()
        return
    while not root.exists() and root != root.parent:  # nothing stored yet: its filesystem
        root = root.parent
    descriptor = os.open(root, os.O_RDONLY)
    try:
        if _syncfs(descriptor) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs failed: {os.strerror(errno)}")
    finally:
        os.close(descriptor)
