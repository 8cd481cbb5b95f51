"""Misbehaving peers on loopback: HTTP servers that lie, stall, redirect, echo or never end.

The simulator is a well-behaved ClaimX. These are the peers it cannot be: each is a raw asyncio
server on ``127.0.0.1`` (or another ``127/8`` address) in its own thread, writing exactly the
bytes a test gives it, so a test can send a Content-Length that lies, drip one byte a second, or
count that nobody ever connected. Nothing here talks to a non-loopback address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Request:
    """One HTTP request a server received: enough to assert on what a client sent."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Exchange:
    """The connection a handler answers on; it counts what it sent."""

    request: Request
    writer: asyncio.StreamWriter
    sent: int = 0

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        """A whole response; ``content_length`` may lie about ``body``."""
        all_headers = {
            "Content-Length": str(len(body) if content_length is None else content_length)
        }
        all_headers |= {"Connection": "close", **(headers or {})}
        await self.send(head(status, all_headers) + body)


Handler = Callable[[Exchange], Awaitable[None]]


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class HostileServer:
    """A raw HTTP/1.1 server in a background thread; ``handler`` writes each response."""

    handler: Handler
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def origin(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    @property
    def bytes_sent(self) -> int:
        return sum(exchange.sent for exchange in self.exchanges)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            exchange = Exchange(request, writer)
            self.exchanges.append(exchange)
            await self.handler(exchange)
        except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass  # the client hung up: that is what several tests want to see
        finally:
            writer.close()

    @contextmanager
    def running(self) -> Iterator[HostileServer]:
        started = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop
        holder: dict[str, asyncio.Server] = {}

        async def start() -> None:
            server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
            holder["server"] = server
            self.port = server.sockets[0].getsockname()[1]
            started.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        started.wait(10)
        try:
            yield self
        finally:

            async def stop() -> None:
                holder["server"].close()
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for other in others:
                    other.cancel()
                await asyncio.gather(*others, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, *_ = [*lines[0].split(" ", 2), "", ""]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return Request(method, target, headers)


@contextmanager
def serving(
    handler: Handler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[HostileServer]:
    with HostileServer(handler, host, tls).running() as server:
        yield server


# Canned behaviours ------------------------------------------------------------------------


def answer(status: int, body: bytes = b"", **headers: str) -> Handler:
    async def handle(exchange: Exchange) -> None:
        await exchange.respond(status, body, {k.replace("_", "-"): v for k, v in headers.items()})

    return handle


def endless(chunk: bytes = b"\0" * 65536, delay_s: float = 0.0, **headers: str) -> Handler:
    """200 without Content-Length, then ``chunk`` forever (until the client hangs up)."""

    async def handle(exchange: Exchange) -> None:
        hdrs = {"Connection": "close", **{k.replace("_", "-"): v for k, v in headers.items()}}
        await exchange.send(head(200, hdrs))
        while True:
            await exchange.send(chunk)
            if delay_s:
                await asyncio.sleep(delay_s)

    return handle


@cache
def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of zeros that inflates ~1000-fold."""
    return gzip.compress(b"\0" * inflated_bytes, compresslevel=9)


def self_signed_tls(directory: Path, host: str = "127.0.0.1") -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (that no client should trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context
