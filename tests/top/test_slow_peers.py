"""``claimx top`` beside a stage endpoint that answers, but slowly: real HTTP servers that send
their headers, or their body, a few bytes at a time, each piece well inside the socket timeout.
The view still comes every refresh, with that process unreachable, and the threads left
waiting on it do not pile up."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from claimx_flow.top.endpoints import Endpoint
from claimx_flow.top.scrape import Scrape, Scraper

METRICS = b"# TYPE claimx_consumed_messages counter\nclaimx_consumed_messages_total 3\n"
READY = b'{"checks": {"worker": {"ok": true}}}'
PIECE_S = 0.05
"""Between two pieces of a trickled answer: far inside any socket timeout."""


def server(answer: Callable[[BaseHTTPRequestHandler, threading.Event], None]) -> Iterator[int]:
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with contextlib.suppress(OSError):  # the scraper gave up and closed the connection
                answer(self, stop)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield int(httpd.server_address[1])
    stop.set()
    httpd.shutdown()
    httpd.server_close()


def trickle(handler: BaseHTTPRequestHandler, data: bytes, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(PIECE_S):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


def trickled_body(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """Headers at once, then a body of a megabyte, a byte at a time."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(1 << 20))
    handler.end_headers()
    handler.wfile.flush()
    trickle(handler, b"#" * (1 << 20), stop)


def trickled_headers(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """A status line, then headers that never end: urlopen never returns."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    trickle(handler, b"X-Slow: " + b"a" * (1 << 20), stop)


def prompt(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    body = METRICS if handler.path == "/metrics" else READY
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def slow_body() -> Iterator[int]:
    yield from server(trickled_body)


@pytest.fixture
def slow_headers() -> Iterator[int]:
    yield from server(trickled_headers)


@pytest.fixture
def fine() -> Iterator[int]:
    yield from server(prompt)


def scrape_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("claimx-top-scrape")]


def bounded(call: Callable[[], dict[Endpoint, Scrape]], limit_s: float) -> dict[Endpoint, Scrape]:
    """``call()``, or a failure (not a hung test) when it takes longer than ``limit_s``."""
    found: list[dict[Endpoint, Scrape]] = []
    worker = threading.Thread(target=lambda: found.append(call()), daemon=True)
    worker.start()
    worker.join(limit_s)
    assert found, f"no scrape result after {limit_s}s"
    return found[0]


def test_each_refresh_ends_at_the_timeout(slow_body: int, slow_headers: int, fine: int) -> None:
    body = Endpoint("enrich", "127.0.0.1", slow_body)
    headers = Endpoint("download", "127.0.0.1", slow_headers)
    good = Endpoint("ingest", "127.0.0.1", fine)
    scraper = Scraper([body, headers, good], timeout_s=0.5)
    for _ in range(3):
        started = time.monotonic()
        found = bounded(scraper.all, 10)
        assert time.monotonic() - started < 3  # 0.5 s and the machine's load, not 10 s
        for slow in (body, headers):
            assert found[slow].reachable is False
            assert "no answer within 0.5s" in (found[slow].error or "")
        assert found[good].reachable is True and found[good].consumed == 3
    # The trickled body's scrape ends at its own deadline; the endpoint whose headers never end
    # holds one thread, not 3.
    expected = [f"claimx-top-scrape {headers.address}"]
    deadline = time.monotonic() + 10
    while [t.name for t in scrape_threads()] != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.name for t in scrape_threads()] == expected


def test_top_once_shows_a_slow_endpoint_as_unreachable_and_exits(
    kafka_bootstrap: str, slow_headers: int, fine: int, tmp_path: Path
) -> None:
    """The whole command, as an operator runs it: the snapshot comes within the timeout, and
    the thread still waiting on the slow endpoint does not keep the process from ending."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
        "CLAIMX_ENV": "local",
    }
    claimx = str(Path(sys.executable).with_name("claimx"))
    flags = ["--once", "-o", "json", "--interval", "0.2", "--timeout", "0.5"]
    endpoints = ["-e", f"enrich=127.0.0.1:{slow_headers}", "-e", f"ingest=127.0.0.1:{fine}"]
    started = time.monotonic()
    done = subprocess.run(
        [claimx, "top", *flags, *endpoints], capture_output=True, text=True, env=env, timeout=30
    )
    assert time.monotonic() - started < 15
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1  # a stage endpoint did not answer; Kafka did
    stages = {row["stage"]: row for row in json.loads(done.stdout)["stages"]}
    (slow,) = stages["enrich"]["processes"]
    assert slow["reachable"] is False and slow["error"].startswith("no answer within 0.5s")
    (good,) = stages["ingest"]["processes"]
    assert good["reachable"] is True and good["ready"] is True
