"""Media files in OneLake through the ADLS Gen2 (DFS) API.

The workspace is the file system and files live under ``{lakehouse}/Files/``. Uploads stream in
bounded chunks (a 500 MB video never sits in memory) into a staging file beside the target,
which is renamed onto the target once flushed: a replay rewrites the same deterministic path
instead of adding a copy, and an upload that fails halfway leaves the file already there as it
was (creating the target itself would empty it first). Each file carries its sha256 as
metadata, so a replay of an upload that already landed is skipped. The size OneLake holds
afterwards is read back, so the upload stage verifies what was stored, not what was sent. Every
SDK failure becomes a :class:`OneLakeError` whose ``category`` the stage routes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.filedatalake import FileProperties
from azure.storage.filedatalake.aio import DataLakeFileClient, DataLakeServiceClient

from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.models import redact
from claimx_flow.models.redaction import truncate
from claimx_flow.models.types import as_utc
from claimx_flow.storage.address import OneLakeAddress
from claimx_flow.storage.base import ContentMismatch, Fingerprint, StoredFile, read_fingerprint
from claimx_flow.storage.leftovers import Leftover, checked, is_staging_name, staging_name
from claimx_flow.storage.paths import MEDIA_ROOT, probe_path

log = logging.getLogger(__name__)

Credential = AzureNamedKeyCredential | AsyncTokenCredential

MIB = 1024 * 1024
_TRANSIENT_STATUS = {408, 409, 412, 429}  # timeouts, throttling, a concurrent writer of the path
SHA256_METADATA = "claimx_sha256"
DISCARD_TIMEOUT_S = 10.0
"""How long a failed upload may spend deleting its staging file (best effort)."""


class OneLakeError(ClaimxError):
    """A OneLake call failed; ``category`` says whether to retry, dead-letter or alert."""

    def __init__(self, category: ErrorCategory, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.status = status


def classify(exc: AzureError) -> ErrorCategory:
    """Transient: 5xx, timeouts, throttling, lost connections. Auth: 401/403 or no credential
    from the chain. Anything else (a missing workspace, a bad request) will fail again."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) or status in {401, 403}:
        return ErrorCategory.AUTH
    if isinstance(exc, HttpResponseError) and status is not None:
        if status >= 500 or status in _TRANSIENT_STATUS:
            return ErrorCategory.TRANSIENT
        return ErrorCategory.PERMANENT
    return ErrorCategory.TRANSIENT  # ServiceRequestError / ServiceResponseError: no answer


def describe(exc: AzureError) -> str:
    """A short account of ``exc``: the status and service error code, or the first line."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, HttpResponseError) and status is not None:
        code = getattr(exc, "error_code", None) or exc.reason or ""
        return f"HTTP {status} {getattr(code, 'value', code)}".rstrip()
    first_line = (str(exc.message or exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"


@dataclass(frozen=True)
class OneLakeTuning:
    """Transfer knobs. The SDK's own retries stay short: the pipeline's retry tiers take the
    long outages, and a stalled step holds up its whole batch."""

    chunk_bytes: int = 4 * MIB
    retries: int = 2
    initial_backoff_s: float = 1.0
    backoff_base: float = 2.0
    jitter_s: float = 1.0
    connect_timeout_s: float = 20.0
    read_timeout_s: float = 60.0


class OneLakeFileStore:
    """A :class:`~claimx_flow.storage.base.FileStore` on OneLake's ``{lakehouse}/Files``."""

    def __init__(
        self,
        address: OneLakeAddress,
        credential: Credential,
        *,
        tuning: OneLakeTuning | None = None,
        secrets: tuple[str, ...] = (),
        owns_credential: bool = False,
    ) -> None:
        self.address = address
        self.tuning = tuning or OneLakeTuning()
        self._credential = credential
        self._owns_credential = owns_credential
        self._secrets = secrets
        self._service = DataLakeServiceClient(
            address.endpoint,
            credential=credential,
            retry_total=self.tuning.retries,
            initial_backoff=self.tuning.initial_backoff_s,
            increment_base=self.tuning.backoff_base,
            random_jitter_range=self.tuning.jitter_s,
            connection_timeout=self.tuning.connect_timeout_s,
            read_timeout=self.tuning.read_timeout_s,
        )
        self._file_system = self._service.get_file_system_client(address.workspace)

    def uri_of(self, path: str) -> str:
        return self.address.uri("Files", path)

    async def put(self, path: str, source: Path, expected: Fingerprint | None = None) -> StoredFile:
        target = self._file(path)
        # Opened once: the bytes sent are the bytes checked, even if a download run again
        # renames a new cache file over this one meanwhile.
        handle = await asyncio.to_thread(source.open, "rb")
        try:
            # Read before anything is sent: the check, and the sha256 the file will carry.
            actual = await asyncio.to_thread(read_fingerprint, handle)
            if expected is not None and actual != expected:
                raise ContentMismatch(actual)
            async with self._classified("upload", path):
                held = _holding(await self._properties(target), actual)
                if held is None:
                    await asyncio.to_thread(handle.seek, 0)
                    await self._upload_staged(path, handle, actual)
                    held = int((await target.get_file_properties()).size)
        finally:
            handle.close()
        return StoredFile(path=path, uri=self.uri_of(path), bytes=held)

    async def _upload_staged(self, path: str, source: BinaryIO, content: Fingerprint) -> None:
        """Stream ``source`` into a staging file of its own, then rename it onto ``path``."""
        staging = self._file(_staging_path(path))
        try:
            created = await staging.create_file(metadata={SHA256_METADATA: content.sha256})
            offset = 0
            async for chunk in _chunks(source, self.tuning.chunk_bytes):
                await staging.append_data(chunk, offset=offset, length=len(chunk))
                offset += len(chunk)
            # Only our own create may be flushed over: a concurrent writer fails this one.
            await staging.flush_data(
                offset,
                etag=str(created["etag"]),
                match_condition=MatchConditions.IfNotModified,
                close=True,
            )
            destination = self.address.item_path("Files", path)
            await staging.rename_file(f"{self.address.workspace}/{destination}")
        except BaseException:
            await self._discard(staging)
            raise

    async def _discard(self, staging: DataLakeFileClient) -> None:
        """Delete a failed upload's staging file if it can be done quickly; one left behind
        is hidden (a dot name) and never read."""
        try:
            async with asyncio.timeout(DISCARD_TIMEOUT_S):
                await staging.delete_file()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            log.info("staging file %s left behind: %s", staging.path_name, describe(exc))
        except TimeoutError:
            log.info("staging file %s left behind: no answer in time", staging.path_name)

    async def holds(self, path: str, expected: Fingerprint) -> StoredFile | None:
        async with self._classified("stat", path):
            size = _holding(await self._properties(self._file(path)), expected)
        return None if size is None else StoredFile(path, self.uri_of(path), size)

    async def _properties(self, file: DataLakeFileClient) -> FileProperties | None:
        try:
            return await file.get_file_properties()
        except ResourceNotFoundError:
            return None

    async def flush(self) -> None:
        return None  # each put ends with flush_data(close=True): already committed

    async def size_of(self, path: str) -> int | None:
        async with self._classified("stat", path):
            properties = await self._properties(self._file(path))
        return None if properties is None else int(properties.size)

    async def check_writable(self) -> None:
        """Create and delete a probe file: proves the credential may write, not just read."""
        probe = probe_path()
        file = self._file(probe)
        async with self._classified("probe", probe):
            await file.create_file()
            await file.delete_file()

    async def leftovers(
        self, before: datetime, scanned: Callable[[int], None] = lambda count: None
    ) -> list[Leftover]:
        """Listed page by page under the media root, the one folder uploads write (and all a
        least-privileged identity may read)."""
        root = self.address.item_path("Files", MEDIA_ROOT)
        found: list[Leftover] = []
        count = 0
        async with self._classified("list", MEDIA_ROOT):
            pages = self._file_system.get_paths(root, recursive=True).by_page()
            async for page in pages:
                async for item in page:
                    count += 1
                    name = str(item.name)
                    if item.is_directory or not is_staging_name(name.rpartition("/")[2]):
                        continue
                    modified = as_utc(item.last_modified)  # the SDK's is naive, in UTC
                    if modified < before:
                        relative = f"{MEDIA_ROOT}/{_below(root, name)}"
                        size = int(item.content_length or 0)
                        found.append(Leftover(relative, size, modified))
                scanned(count)
        return found

    async def discard(self, leftover: Leftover) -> bool:
        checked(leftover)
        async with self._classified("delete", leftover.path):
            try:
                await self._file(leftover.path).delete_file()
            except ResourceNotFoundError:
                return False
        return True

    async def close(self) -> None:
        await self._service.close()
        if self._owns_credential and isinstance(self._credential, AsyncTokenCredential):
            await self._credential.close()

    def _file(self, path: str) -> DataLakeFileClient:
        return self._file_system.get_file_client(self.address.item_path("Files", path))

    @asynccontextmanager
    async def _classified(self, operation: str, path: str) -> AsyncIterator[None]:
        try:
            yield
        except AzureError as exc:
            message = truncate(
                redact(f"onelake {operation} {path}: {describe(exc)}", self._secrets)
            )
            raise OneLakeError(
                classify(exc), message, status=getattr(exc, "status_code", None)
            ) from exc


def _below(root: str, name: str) -> str:
    """``name``, a path the listing of ``root`` returned, relative to ``root``.

    The service may spell the lakehouse otherwise than the settings do (its case): a name that
    is not under ``root`` even so is an error, never a path guessed at and deleted.
    """
    if name.lower().startswith(f"{root.lower()}/"):
        return name[len(root) + 1 :]
    raise OneLakeError(
        ErrorCategory.PERMANENT, f"onelake list {root}: the service listed {name!r} outside it"
    )


def _holding(properties: FileProperties | None, content: Fingerprint) -> int | None:
    """The stored size, if the stored file is known to hold ``content``: its size and the
    sha256 it was uploaded with (a file without one is uploaded again)."""
    if properties is None or int(properties.size) != content.bytes:
        return None
    metadata = {key.lower(): value for key, value in (properties.metadata or {}).items()}
    return content.bytes if metadata.get(SHA256_METADATA) == content.sha256 else None


def _staging_path(path: str) -> str:
    """A hidden name beside ``path``, its own for every upload attempt."""
    folder, _, name = path.rpartition("/")
    return f"{folder}/{staging_name(name)}" if folder else staging_name(name)


async def _chunks(source: BinaryIO, size: int) -> AsyncIterator[bytes]:
    """``source`` in chunks of ``size`` bytes, read off the event loop."""
    while chunk := await asyncio.to_thread(source.read, size):
        yield chunk
