"""One look at one stage process: its ``/metrics`` counters and its ``/health/ready`` answer.

A process that does not answer is a result too (``reachable`` false, with the reason), never
an exception: the view shows it and goes on. Nor may one that answers slowly hold the view:
urlopen's timeout bounds each socket operation, not a name lookup or a body trickled a byte at
a time, so each scrape has one deadline for both its requests.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from claimx_flow.catalog import StageName
from claimx_flow.top.endpoints import Endpoint

CONSUMED = "claimx_consumed_messages_total"
"""Input: messages read from Kafka, every stage."""
OUTPUT: dict[StageName, str] = {
    "ingest": "claimx_events_ingested_total",
    "enrich": "claimx_events_enriched_total",
    "download": "claimx_downloads_total",
    "upload": "claimx_uploads_total",
    "results": "claimx_results_files_total",
    "retry": "claimx_retry_release_lateness_seconds_count",
}
"""Output: what each stage counts as work done (the retry stage: messages released)."""
FAILED = "claimx_failures_routed_total"
"""Messages sent to a retry tier or a DLQ."""
LAG = "claimx_consumer_lag_messages"
BREAKER = "claimx_api_circuit_breaker_state"
STAGE_INFO = "claimx_stage_info"

MAX_BODY = 8 * 1024 * 1024
CHUNK = 64 * 1024
THREAD_NAME = "claimx-top-scrape"


@dataclass(frozen=True)
class Scrape:
    endpoint: Endpoint
    at: float
    """``time.monotonic()`` when the metrics were read."""
    wall: datetime
    reachable: bool
    error: str | None = None
    consumed: float = 0.0
    produced: float = 0.0
    failed: float = 0.0
    lag: float | None = None
    """The stage's own view of its lag: the sum of its lag gauges."""
    breaker: str | None = None
    serves: str | None = None
    """The stage the process says it runs (``claimx_stage_info``)."""
    ready: bool | None = None
    not_ready: tuple[str, ...] = field(default_factory=tuple)
    """The readiness checks that fail, with their detail."""


def _get(url: str, timeout_s: float, deadline: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "text/plain, application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return int(answer.status), _body(answer, deadline)
    except urllib.error.HTTPError as exc:  # readiness answers 503 with its reasons
        return exc.code, _body(exc, deadline)


class _Late(TimeoutError):
    """The scrape's deadline passed while an answer was still arriving."""


def _late(timeout_s: float) -> str:
    return f"no answer within {timeout_s:g}s"


def _body(answer: Any, deadline: float) -> bytes:
    """Up to ``MAX_BODY`` bytes, in reads of what has arrived (``read1``: ``read(n)`` waits for
    all n), until the ``time.monotonic()`` deadline: then ``_Late``, which ends this scrape's
    thread soon after its caller stopped waiting for it."""
    parts: list[bytes] = []
    size = 0
    while size < MAX_BODY:
        if time.monotonic() > deadline:
            raise _Late
        chunk = answer.read1(min(CHUNK, MAX_BODY - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        return str(text)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass(frozen=True)
class Numbers:
    consumed: float
    produced: float
    failed: float
    lag: float | None
    breaker: str | None
    serves: str | None


def parse_metrics(text: str, stage: StageName) -> Numbers:
    """The numbers ``top`` shows, from a Prometheus text exposition."""
    consumed = produced = failed = 0.0
    lag: float | None = None
    breaker: str | None = None
    serves: str | None = None
    output = OUTPUT[stage]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, value = sample.name, float(sample.value)
            if name == CONSUMED:
                consumed += value
            elif name == output:
                produced += value
            elif name == FAILED:
                failed += value
            elif name == LAG:
                lag = (lag or 0.0) + value
            elif name == BREAKER and value == 1:
                breaker = sample.labels.get("state")
            elif name == STAGE_INFO and value == 1:
                serves = sample.labels.get("stage")
    return Numbers(consumed, produced, failed, lag, breaker, serves)


def _readiness(body: bytes) -> tuple[str, ...]:
    """The failing checks of a readiness answer; any other answer is one unreadable one."""
    try:
        checks = json.loads(body).get("checks")
    except (ValueError, AttributeError, RecursionError):  # not JSON, no object, too deep
        checks = None
    if not isinstance(checks, dict) or not checks:
        return ("unreadable answer",)
    return tuple(
        f"{name}: {check.get('detail', '')}" if isinstance(check, dict) else f"{name}: unreadable"
        for name, check in sorted(checks.items())
        if not isinstance(check, dict) or not check.get("ok")
    ) or ("not ready, every check passing",)


def scrape(endpoint: Endpoint, timeout_s: float) -> Scrape:
    """Metrics, then readiness, both within ``timeout_s``; the first failure makes the process
    unreachable."""
    wall = datetime.now(UTC)
    deadline = time.monotonic() + timeout_s
    try:
        status, body = _get(endpoint.url("/metrics"), timeout_s, deadline)
        at = time.monotonic()
        if status != 200:
            return Scrape(endpoint, at, wall, False, f"/metrics answered HTTP {status}")
        numbers = parse_metrics(body.decode("utf-8", "replace"), endpoint.stage)
        status, body = _get(endpoint.url("/health/ready"), timeout_s, deadline)
    except _Late:
        return Scrape(endpoint, time.monotonic(), wall, False, _late(timeout_s))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # not HTTP: a banner
        return Scrape(endpoint, time.monotonic(), wall, False, _reason(exc))
    ready = status == 200
    return Scrape(
        endpoint,
        at,
        wall,
        True,
        **vars(numbers),
        ready=ready,
        not_ready=() if ready else _readiness(body),
    )


class Scraper:
    """Scrapes every endpoint at once and waits no longer than the timeout: a scrape still
    running then is an unreachable row for this refresh.

    Each scrape runs on a daemon thread of its own, and an endpoint whose last scrape still
    runs gets no new one: a stuck endpoint holds one thread, however many refreshes pass, and
    none holds the process at exit (a ``ThreadPoolExecutor`` joins its workers then).
    """

    def __init__(self, endpoints: Sequence[Endpoint], timeout_s: float) -> None:
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._running: dict[Endpoint, Future[Scrape]] = {}

    def all(self) -> dict[Endpoint, Scrape]:
        wall = datetime.now(UTC)
        started = {e: self._start(e) for e in self.endpoints if not self._busy(e)}
        wait(started.values(), timeout=self.timeout_s)
        return {e: self._result(e, started.get(e), wall) for e in self.endpoints}

    def _busy(self, endpoint: Endpoint) -> bool:
        running = self._running.get(endpoint)
        return running is not None and not running.done()

    def _start(self, endpoint: Endpoint) -> Future[Scrape]:
        future: Future[Scrape] = Future()

        def run() -> None:
            try:
                future.set_result(scrape(endpoint, self.timeout_s))
            except BaseException as exc:  # handed to the caller, as an executor would
                future.set_exception(exc)

        name = f"{THREAD_NAME} {endpoint.address}"
        threading.Thread(target=run, name=name, daemon=True).start()
        self._running[endpoint] = future
        return future

    def _result(self, endpoint: Endpoint, future: Future[Scrape] | None, wall: datetime) -> Scrape:
        if future is not None and future.done():
            return future.result()
        late = _late(self.timeout_s)
        if future is None:
            late += " (its last scrape is still waiting)"
        return Scrape(endpoint, time.monotonic(), wall, False, late)

    def close(self) -> None:
        """Nothing to stop: a scrape still running ends at its deadline, or with the process."""
