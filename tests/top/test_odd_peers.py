"""``claimx top`` against processes that answer, but not as a stage does: something that is not
HTTP on the port (an SSH banner, a closed connection), and a readiness answer of any JSON. Each
is a row that says so, never a traceback out of the scrape."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from claimx_flow.top.endpoints import Endpoint
from claimx_flow.top.scrape import scrape

METRICS = b"# TYPE claimx_consumed_messages counter\nclaimx_consumed_messages_total 3\n"


@pytest.fixture
def banner() -> Iterator[int]:
    """A port that answers every connection with an SSH banner and closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:  # read the request first: closing on it unread is a reset
                connection.settimeout(2)
                connection.recv(65536)
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                connection.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    server.close()


def readiness_server(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, answer = (200, METRICS) if self.path == "/metrics" else (503, body)
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_port_that_is_not_http_is_an_unreachable_row(banner: int) -> None:
    found = scrape(Endpoint("enrich", "127.0.0.1", banner), timeout_s=2)
    assert found.reachable is False
    assert found.error and "BadStatusLine" in found.error  # the answer read, and not HTTP


@pytest.mark.parametrize(
    "body",
    [
        b'{"checks": null}',
        b"[1, 2]",
        b'"down"',
        b'{"checks": [1]}',
        b'{"checks": {"a": 1}}',
        b"{}",
        b"[" * 100_000,  # deeper than json reads
    ],
)
def test_any_readiness_answer_is_a_not_ready_row(body: bytes) -> None:
    server = readiness_server(body)
    try:
        found = scrape(Endpoint("enrich", "127.0.0.1", server.server_address[1]), timeout_s=2)
    finally:
        server.shutdown()
        server.server_close()
    assert found.reachable is True and found.ready is False
    assert found.consumed == 3
    assert found.not_ready and all(isinstance(reason, str) for reason in found.not_ready)
    json.dumps(found.not_ready)
