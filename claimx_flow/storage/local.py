"""Files on the local filesystem under ``CLAIMX_DATA_DIR/files`` (the embedded default)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

from claimx_flow.storage.base import StoredFile
from claimx_flow.storage.paths import UnsafePathError


class LocalFileStore:
    """Writes through a temporary file and an atomic rename: a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _target(self, path: str) -> Path:
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            raise UnsafePathError(f"path {path!r} escapes the storage root")
        return target

    async def put(self, path: str, source: Path) -> StoredFile:
        target = self._target(path)
        size = await asyncio.to_thread(_copy_atomically, source, target)
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


def _copy_atomically(source: Path, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        with source.open("rb") as src, temporary.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target.stat().st_size
