"""The contract every file store keeps, so stages and tests treat them alike."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from claimx_flow.errors import ClaimxError
from claimx_flow.storage.leftovers import Leftover

READ_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    """What the store holds at ``path`` after an upload."""

    path: str
    uri: str
    bytes: int


@dataclass(frozen=True)
class Fingerprint:
    """What a file's content must be: its size and sha256, as recorded when it was downloaded."""

    bytes: int
    sha256: str


class ContentMismatch(ClaimxError):
    """The source file is not the content it was expected to be; nothing was stored."""

    def __init__(self, actual: Fingerprint) -> None:
        super().__init__(f"{actual.bytes} bytes, sha256 {actual.sha256[:12]}…")
        self.actual = actual


class FileStore(Protocol):
    """Uploaded media. ``put`` is idempotent: the same path is overwritten, never duplicated.

    With ``expected``, ``put`` stores ``source`` only if its content matches it and raises
    :class:`ContentMismatch` otherwise, leaving ``path`` as it was. A missing ``source``
    raises ``FileNotFoundError``, also before anything at ``path`` changes. A ``put`` that
    fails, however far it got, leaves what was at ``path`` as it was: a replayed upload never
    damages a good file.
    """

    async def put(
        self, path: str, source: Path, expected: Fingerprint | None = None
    ) -> StoredFile: ...

    async def flush(self) -> None:
        """Make every ``put`` so far durable; a file counts as stored only after this."""
        ...

    async def size_of(self, path: str) -> int | None: ...

    async def holds(self, path: str, expected: Fingerprint) -> StoredFile | None:
        """The file at ``path`` if it is known to hold exactly ``expected``, else None."""
        ...

    def uri_of(self, path: str) -> str: ...

    async def check_writable(self) -> None: ...

    async def leftovers(
        self, before: datetime, scanned: Callable[[int], None] = ...
    ) -> list[Leftover]:
        """Staging files of killed uploads last written before ``before``; ``scanned`` is told
        how many files were looked at so far, as the listing goes."""
        ...

    async def discard(self, leftover: Leftover) -> bool:
        """Delete one staging file; False if it was already gone. Refuses any other file."""
        ...

    async def close(self) -> None: ...


def fingerprint_of(path: Path) -> Fingerprint:
    """Size and sha256 of the file at ``path``, read in bounded chunks (blocking)."""
    with path.open("rb") as source:
        return read_fingerprint(source)


def read_fingerprint(source: BinaryIO) -> Fingerprint:
    """Size and sha256 of what is left to read in ``source`` (blocking)."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(READ_CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return Fingerprint(size, digest.hexdigest())
