"""What a test asks of a running stage from outside: its health endpoints, and its log so far."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path


def status(port: int, path: str) -> int:
    """The HTTP status of ``GET path`` on the stage's health port (raises while it is not up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def status_or_none(port: int, path: str) -> int | None:
    """``status``, or None while nothing answers on the port."""
    try:
        return status(port, path)
    except OSError:
        return None


def log_text(path: Path) -> str:
    """The log written so far ("" before the process has written one)."""
    return path.read_text(errors="replace") if path.exists() else ""


def wait_ready(port: int, timeout_s: float = 60.0) -> datetime:
    """When the stage on ``port`` first answered ready: a bound on how soon it acts must not
    count its start (imports, checks, recovery), which load stretches."""
    deadline = time.monotonic() + timeout_s
    while status_or_none(port, "/health/ready") != 200:
        assert time.monotonic() < deadline, f"the stage on port {port} not ready in {timeout_s} s"
        time.sleep(0.1)
    return datetime.now(UTC)
