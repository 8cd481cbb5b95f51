"""Files on the local filesystem under ``CLAIMX_DATA_DIR/files`` (the embedded default)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

from claimx_flow.storage.base import READ_CHUNK_BYTES, ContentMismatch, Fingerprint, StoredFile
from claimx_flow.storage.paths import UnsafePathError


class LocalFileStore:
    """Writes through a temporary file and an atomic rename: a reader never sees half a file.

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
        size = await asyncio.to_thread(_copy_atomically, source, target, expected)
        return StoredFile(path=path, uri=target.as_uri(), bytes=size)

    def uri_of(self, path: str) -> str:
        return self._target(path).as_uri()

    async def size_of(self, path: str) -> int | None:
        target = self._target(path)
        try:
            return target.stat().st_size
        except FileNotFoundError:
            return None

    async def check_writable(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()

    async def close(self) -> None:
        return None


def _copy_atomically(source: Path, target: Path, expected: Fingerprint | None) -> int:
    """Copy ``source`` to ``target`` through a synced temporary file, checking ``expected``
    on the way: the source is read once, and a mismatch never reaches ``target``."""
    # O_NOFOLLOW: a link in the cache is never followed to something else's content.
    with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW), "rb") as src:
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
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
                os.fsync(dst.fileno())
                stored = os.fstat(dst.fileno()).st_size
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    return stored
