"""The contract every file store keeps, so stages and tests treat them alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredFile:
    """What the store holds at ``path`` after an upload."""

    path: str
    uri: str
    bytes: int


class FileStore(Protocol):
    """Uploaded media. ``put`` is idempotent: the same path is overwritten, never duplicated."""

    async def put(self, path: str, source: Path) -> StoredFile: ...

    async def size_of(self, path: str) -> int | None: ...

    def uri_of(self, path: str) -> str: ...

    async def check_writable(self) -> None: ...

    async def close(self) -> None: ...
