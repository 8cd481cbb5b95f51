"""A minimal ADLS Gen2 (DFS) endpoint: the few REST calls ``OneLakeFileStore`` makes, on disk.

Why it exists: Azurite serves the Blob API but answers the DFS file calls (create, append,
flush, rename) with 400, and no OneLake is reachable from a test. With this server the real
azure-storage-file-datalake SDK sends its real HTTP requests, signed with the real shared key,
so the store's protocol use (HEAD for what is stored → create a staging file with metadata →
append at offsets → flush with the create's ETag → rename onto the target → HEAD for the
stored size) is exercised end to end.

It keeps OneLake's rules that matter to the store: a file system must exist, appends and
flushes must name the right position, a flush must match the ETag it expects, uncommitted
bytes are invisible (a listing, page by page, counts only committed ones), creating a file
empties what was there, a rename replaces its destination and carries the metadata
(``x-ms-properties`` on create, ``x-ms-meta-*`` on HEAD), and a bad signature is refused with
403. Request bodies are streamed to disk. ``fail_next``, ``stall_next`` and ``drop_next``
inject throttling, outages, auth failures, timeouts and lost connections, on the next request
or on the next request of one kind (``on="PATCH flush"``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote

from aiohttp import web

HOST = "127.0.0.1"
LIST_PAGE = 5000
_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


@dataclass
class _Fault:
    status: int
    code: str
    remaining: int
    stall_s: float = 0.0
    on: str | None = None
    """The call it hits (``"PATCH append"``, ``"PUT rename"``…); None: any call."""
    drop_after: int | None = None
    """Read this many body bytes, then drop the connection without an answer."""


class DfsServer:
    """Serves ``http://127.0.0.1:PORT/{account}/{file system}/{path}`` from ``root``."""

    def __init__(self, root: Path, account: str, key: str | None = None) -> None:
        self.root = root
        self.account = account
        self.key = key
        self.port = 0
        self.calls: Counter[str] = Counter()
        self.largest_append = 0
        self._faults: list[_Fault] = []
        self.page_size = LIST_PAGE
        """Paths per listing page at most (the service's own cap is 5,000)."""
        self.writable_under: str | None = None
        """When set, a write outside this folder (``Files/claimx``, say) is refused with 403, as
        OneLake does for an identity granted only that folder."""
        self._etags: dict[Path, str] = {}
        self._metadata: dict[Path, dict[str, str]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="dfs-server", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/{self.account}"

    # Test controls -------------------------------------------------------------------------

    def create_file_system(self, name: str) -> None:
        self._fs_dir(name).mkdir(parents=True, exist_ok=True)

    def stored(self, file_system: str, path: str) -> Path:
        """Where the committed bytes of ``path`` are (the test reads them back from here)."""
        return self._fs_dir(file_system) / path

    def fail_next(self, status: int, code: str, count: int = 1, on: str | None = None) -> None:
        """Answer the next ``count`` requests (of kind ``on``) with ``status`` and ``code``."""
        with self._lock:
            self._faults.append(_Fault(status, code, count, on=on))

    def stall_next(self, seconds: float, count: int = 1, on: str | None = None) -> None:
        """Hold the next ``count`` requests (of kind ``on``) for ``seconds``, then answer."""
        with self._lock:
            self._faults.append(_Fault(0, "", count, stall_s=seconds, on=on))

    def drop_next(self, on: str, after_bytes: int = 0, count: int = 1) -> None:
        """Drop the connection of the next ``count`` requests of kind ``on`` once
        ``after_bytes`` of the body have arrived, answering nothing."""
        with self._lock:
            self._faults.append(_Fault(0, "", count, on=on, drop_after=after_bytes))

    def metadata(self, file_system: str, path: str) -> dict[str, str]:
        """The metadata stored with ``path``."""
        return dict(self._metadata.get(self.stored(file_system, path).resolve(), {}))

    def files(self, file_system: str) -> list[str]:
        """Every committed file of ``file_system``, relative to it, staging files included."""
        root = self._fs_dir(file_system)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.calls.clear()
            self.largest_append = 0
            self.page_size = LIST_PAGE

    # Lifecycle -----------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> DfsServer:
        self._thread.start()
        if not self._ready.wait(timeout_s) or not self.port:
            raise RuntimeError("DFS test server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> DfsServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # Requests ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = request.query.get("action") or request.query.get("resource") or ""
        if request.method == "PUT" and "x-ms-rename-source" in request.headers:
            action = "rename"
        call = f"{request.method} {action}".strip()
        self.calls[call] += 1
        fault = self._take_fault(call)
        if fault is not None and fault.drop_after is not None:
            return await self._drop(request, fault.drop_after)
        if fault is not None and fault.stall_s:
            await asyncio.sleep(fault.stall_s)
        elif fault is not None:
            return _error(fault.status, fault.code)
        if self.key is not None and not self._signed(request):
            return _error(403, "AuthenticationFailed")
        parts = unquote(request.url.raw_path).lstrip("/").split("/", 2)
        if parts[0] != self.account or len(parts) < 2 or not parts[1]:
            return _error(400, "InvalidUri")
        fs_dir = self._fs_dir(parts[1])
        if request.method == "PUT" and action == "filesystem":
            return self._create_file_system(fs_dir)
        if not fs_dir.is_dir():
            return _error(404, "FilesystemNotFound")
        if request.method == "GET" and action == "filesystem" and len(parts) == 2:
            return self._list(request, fs_dir.resolve())
        target = (fs_dir / (parts[2] if len(parts) > 2 else "")).resolve()
        if not target.is_relative_to(fs_dir.resolve()) or target == fs_dir.resolve():
            return _error(400, "InvalidResourceName")
        if request.method != "HEAD" and not self._may_write(target.relative_to(fs_dir.resolve())):
            return _error(403, "AuthorizationPermissionMismatch")
        return await self._dispatch(request, action, target)

    def _may_write(self, relative: Path) -> bool:
        if self.writable_under is None:
            return True
        return f"/{self.writable_under}/" in f"/{relative.as_posix()}"

    async def _dispatch(
        self, request: web.Request, action: str, target: Path
    ) -> web.StreamResponse:
        match request.method, action:
            case "PUT", "file":
                return self._create_file(request, target)
            case "PUT", "rename":
                return self._rename(request, target)
            case "PUT", "directory":
                target.mkdir(parents=True, exist_ok=True)
                return web.Response(status=201)
            case "PATCH", "append":
                return await self._append(request, target)
            case "PATCH", "flush":
                return self._flush(request, target)
            case "HEAD", _:
                return self._properties(target)
            case "DELETE", _:
                return self._delete(target)
        return _error(400, "UnsupportedHttpVerb")

    def _create_file_system(self, fs_dir: Path) -> web.StreamResponse:
        if fs_dir.is_dir():
            return _error(409, "FilesystemAlreadyExists")
        fs_dir.mkdir(parents=True)
        return web.Response(status=201, headers=self._stamp(fs_dir))

    def _create_file(self, request: web.Request, target: Path) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == "*" and target.exists():
            return _error(409, "PathAlreadyExists")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")
        self._staging(target).unlink(missing_ok=True)
        self._metadata[target] = _properties(request.headers.get("x-ms-properties", ""))
        return web.Response(status=201, headers=self._stamp(target))

    def _rename(self, request: web.Request, target: Path) -> web.StreamResponse:
        source_text = unquote(request.headers["x-ms-rename-source"].split("?", 1)[0])
        file_system, _, relative = source_text.lstrip("/").partition("/")
        fs_dir = self._fs_dir(file_system).resolve()
        source = (fs_dir / relative).resolve()
        if not relative or not source.is_relative_to(fs_dir) or not source.is_file():
            return _error(404, "SourcePathNotFound")
        if request.headers.get("If-None-Match") == "*" and target.exists():
            return _error(409, "PathAlreadyExists")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)  # the destination is replaced, as the service does
        self._staging(source).unlink(missing_ok=True)
        self._metadata[target] = self._metadata.pop(source, {})
        self._etags.pop(source, None)
        return web.Response(status=201, headers=self._stamp(target))

    def _list(self, request: web.Request, fs_dir: Path) -> web.StreamResponse:
        """Path - List: one page of ``maxResults`` under ``directory``, in name order, with
        ``x-ms-continuation`` naming where the next page starts (an opaque token to clients)."""
        top = (fs_dir / request.query.get("directory", "")).resolve()
        if not top.is_relative_to(fs_dir) or not top.is_dir():
            return _error(404, "PathNotFound")
        found = top.rglob("*") if request.query.get("recursive") == "true" else top.glob("*")
        names = sorted(path.relative_to(fs_dir).as_posix() for path in found)
        after = request.query.get("continuation", "")
        size = min(int(request.query.get("maxResults", LIST_PAGE)), self.page_size)
        page = [name for name in names if name > after][:size]
        paths = []
        for name in page:
            stat = (fs_dir / name).stat()
            entry = {
                "name": name,
                "contentLength": 0 if (fs_dir / name).is_dir() else stat.st_size,
                "lastModified": formatdate(stat.st_mtime, usegmt=True),
                "etag": self._etags.get(fs_dir / name, '"0x0"'),
            }
            if (fs_dir / name).is_dir():
                entry["isDirectory"] = "true"
            paths.append(entry)
        more = page and names[-1] != page[-1]
        headers = {"x-ms-continuation": page[-1]} if more else {}
        return web.json_response({"paths": paths}, headers=headers)

    async def _drop(self, request: web.Request, after_bytes: int) -> web.StreamResponse:
        received = 0
        while received < after_bytes:
            chunk = await request.content.read(min(64 * 1024, after_bytes - received))
            if not chunk:
                break
            received += len(chunk)
        assert request.transport is not None
        request.transport.abort()  # no answer: the client sees its connection reset
        return web.Response(status=500)

    async def _append(self, request: web.Request, target: Path) -> web.StreamResponse:
        if not target.is_file():
            return _error(404, "PathNotFound")
        staging = self._staging(target)
        staged = staging.stat().st_size if staging.exists() else 0
        if int(request.query.get("position", "-1")) != target.stat().st_size + staged:
            return _error(400, "InvalidFlushPosition")
        staging.parent.mkdir(parents=True, exist_ok=True)
        received = 0
        with staging.open("ab") as out:
            async for chunk in request.content.iter_chunked(256 * 1024):
                out.write(chunk)
                received += len(chunk)
        self.largest_append = max(self.largest_append, received)
        return web.Response(status=202)

    def _flush(self, request: web.Request, target: Path) -> web.StreamResponse:
        if not target.is_file():
            return _error(404, "PathNotFound")
        expected = request.headers.get("If-Match")
        if expected is not None and expected != self._etags.get(target):
            return _error(412, "ConditionNotMet")
        staging = self._staging(target)
        staged = staging.stat().st_size if staging.exists() else 0
        if int(request.query.get("position", "-1")) != target.stat().st_size + staged:
            return _error(400, "InvalidFlushPosition")
        if staged:
            with staging.open("rb") as source, target.open("ab") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
            staging.unlink()
        return web.Response(status=200, headers=self._stamp(target))

    def _properties(self, target: Path) -> web.StreamResponse:
        if not target.is_file():
            return _error(404, "BlobNotFound")
        metadata = {f"x-ms-meta-{k}": v for k, v in self._metadata.get(target, {}).items()}
        headers = {
            **self._stamp(target, new=False),
            **metadata,
            "Content-Length": str(target.stat().st_size),
            "Content-Type": "application/octet-stream",
            "x-ms-resource-type": "file",
            "x-ms-blob-type": "BlockBlob",
            "x-ms-creation-time": formatdate(target.stat().st_ctime, usegmt=True),
        }
        return web.Response(status=200, headers=headers)

    def _delete(self, target: Path) -> web.StreamResponse:
        if not target.is_file():
            return _error(404, "PathNotFound")
        target.unlink()
        self._staging(target).unlink(missing_ok=True)
        self._etags.pop(target, None)
        self._metadata.pop(target, None)
        return web.Response(status=200)

    # Helpers -------------------------------------------------------------------------------

    def _fs_dir(self, name: str) -> Path:
        return self.root / "filesystems" / name

    def _staging(self, target: Path) -> Path:
        digest = hashlib.sha256(str(target).encode()).hexdigest()
        return self.root / "uncommitted" / digest

    def _stamp(self, target: Path, new: bool = True) -> dict[str, str]:
        if new or target not in self._etags:
            self._etags[target] = f'"0x{next(self._versions):016X}"'
        return {
            "ETag": self._etags[target],
            "Last-Modified": formatdate(target.stat().st_mtime, usegmt=True),
        }

    def _take_fault(self, call: str) -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.on is None or fault.on == call:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.pop(index)
                    return fault
            return None

    def _signed(self, request: web.Request) -> bool:
        """Check the SharedKey signature as the storage service does."""
        assert self.key is not None
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        account, _, signature = credential.partition(":")
        if scheme != "SharedKey" or account != self.account:
            return False
        values = []
        for name in _SIGNED_HEADERS:
            value = request.headers.get(name, "")
            values.append("" if name == "content-length" and value == "0" else value)
        x_ms = sorted(
            (name.lower(), value)
            for name, value in request.headers.items()
            if name.lower().startswith("x-ms-")
        )
        text = request.method + "\n" + "\n".join(values) + "\n"
        text += "".join(f"{name}:{value}\n" for name, value in x_ms)
        text += f"/{self.account}{request.url.raw_path}"
        for name, value in sorted(request.query.items()):
            text += f"\n{name.lower()}:{value}"
        digest = hmac.new(base64.b64decode(self.key), text.encode(), hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64encode(digest).decode(), signature)


def _properties(header: str) -> dict[str, str]:
    """``x-ms-properties``: ``name=base64(value)`` pairs separated by commas."""
    pairs = (item.partition("=") for item in header.split(",") if item)
    return {name: base64.b64decode(value).decode() for name, _, value in pairs}


def _error(status: int, code: str) -> web.Response:
    body = f'{{"error":{{"code":"{code}","message":"{code} (DFS test server)"}}}}'
    return web.Response(
        status=status,
        text=body,
        content_type="application/json",
        headers={"x-ms-error-code": code},
    )
