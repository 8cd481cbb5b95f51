"""A proxy in front of a storage emulator that can refuse writes while it passes reads, or be
unavailable.

Azurite grants every request its account key signs; a principal that may read a lakehouse but
not write it (a role changed under a running stage) exists only on the real service. So this
stands in front of the real Azurite and answers its writes as Azure answers a principal
without write permission: 403 ``AuthorizationPermissionMismatch``. Everything else goes
through unchanged (Shared Key signatures do not cover the host, so the emulator accepts the
forwarded requests). An outage of the service itself is every request answered 503
``ServerBusy`` (``unavailable``).
"""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

WRITES = {"PUT", "POST", "PATCH", "DELETE"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
REFUSAL = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code>'
    b"<Message>This request is not authorized to perform this operation using this "
    b"permission.</Message></Error>"
)
BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>The server is currently unable to receive requests. Please retry your request."
    b"</Message></Error>"
)


class RefusingProxy:
    """``endpoint`` mirrors the upstream's path (``http://127.0.0.1:PORT/devstoreaccount1``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path
        self.refusing = False
        """Every write refused."""
        self.outage_after_a_commit = False
        """The next data-file write refused, the writes after it passed until a commit to a
        table's log lands, and from then on every write refused: an outage that starts while a
        committer splits a batch, after part of it landed."""
        self.unavailable = False
        """Every request answered 503 ``ServerBusy``, as Azure answers during an outage."""
        self.refuse_writes = 0
        """The next this many writes refused, then writes pass: a refusal that ends while a
        committer splits a batch."""
        self.writes_unavailable = False
        """Every write answered 503 ``ServerBusy``, reads passed: a throttle of writes."""
        self._data_file_refused = False
        self.refused = 0
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="refusing-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._path}"

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app = web.Application(client_max_size=1024**3)

            async def handle(request: web.Request) -> web.Response:
                return await self._pass(session, request)

            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

    async def _pass(self, session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        if self.unavailable or (self.writes_unavailable and request.method in WRITES):
            return web.Response(
                status=503,
                body=BUSY,
                content_type="application/xml",
                headers={"x-ms-error-code": "ServerBusy"},
            )
        write = request.method in WRITES
        first_data_file = self.outage_after_a_commit and not self._data_file_refused
        if write and first_data_file and "/_delta_log/" not in request.path:
            self._data_file_refused = True
            return self._refusal()
        if self.refusing and write:
            return self._refusal()
        if self.refuse_writes and write:
            self.refuse_writes -= 1
            return self._refusal()
        answer = await self._forward(session, request)
        landed = write and answer.status < 300 and "/_delta_log/" in request.path
        if landed and self._data_file_refused and request.path.endswith(".json"):
            self.refusing = True
        return answer

    def _refusal(self) -> web.Response:
        self.refused += 1
        return web.Response(
            status=403,
            body=REFUSAL,
            content_type="application/xml",
            headers={"x-ms-error-code": "AuthorizationPermissionMismatch"},
        )

    async def _forward(self, session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method,
            self._origin + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
            # The signature covers Content-Type: add nothing the client did not send.
            skip_auto_headers={"Content-Type", "Accept-Encoding", "User-Agent"},
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers=kept)
