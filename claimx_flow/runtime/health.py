"""Liveness and readiness of a stage process, served with its metrics on the stage's port.

Alive means the dataflow still makes progress: every worker that reads a source polls it, and
each poll is a heartbeat; a worker stuck in a step stops polling and its heartbeat goes stale.
Ready means the stage can do useful work now: Kafka answers, the ClaimX API answers and its
circuit is not open (stages that call it), the file store takes writes (upload), and no
credentials were refused lately.

The server runs its own event loop on a daemon thread, so a probe never waits for the dataflow
and the dataflow never waits for a probe. Active checks run in the background, each on its own
cadence and bounded by a timeout; a probe only reads their latest results.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.models.redaction import redact
from claimx_flow.runtime import metrics

log = logging.getLogger(__name__)

AUTH_HOLD_S = 60.0
"""Readiness stays red this long after the last refused credential."""
PROBE_TIMEOUT_S = 2.0

KAFKA_CHECK = "kafka"
KAFKA_DOWN_AFTER = 2
"""Failed Kafka checks in a row (five seconds apart) that make an outage: one is a blip."""
MAX_WAITS = 256
"""Spans of waiting for Kafka kept for liveness (the oldest drop out)."""
WAIT_GAP_S = 3.0
"""Reports of waiting at most this far apart are one wait."""

Probe = Callable[[], Awaitable[str]]
"""An active check: returns a short detail when healthy, raises when not."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    at: float = 0.0
    """``time.monotonic()`` when it was found (0 for checks computed on the spot)."""


@dataclass(frozen=True)
class ActiveCheck:
    name: str
    probe: Probe
    every_s: float
    timeout_s: float = PROBE_TIMEOUT_S


class HealthState:
    """What the dataflow and the checks report; read by the probes. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self._beats: dict[int, float] = {}
        self._waits: deque[list[float]] = deque(maxlen=MAX_WAITS)
        """Spans ``[from, to]`` in which a worker waited for Kafka, newest last."""
        self._kafka_failing: tuple[float, int] | None = None
        """When the Kafka check's failures in a row began, and how many there are."""
        self._auth_failed_at: float | None = None
        self._breaker: str | None = None
        self._results: dict[str, CheckResult] = {}

    def beat(self, quiet_for_s: float = 0.0) -> None:
        """The calling worker made progress; it may stay quiet ``quiet_for_s`` (a timer)."""
        with self._lock:
            self._beats[threading.get_ident()] = self._clock() + max(quiet_for_s, 0.0)

    def auth_failed(self) -> None:
        with self._lock:
            self._auth_failed_at = self._clock()

    def breaker(self, state: str) -> None:
        with self._lock:
            self._breaker = state

    def waiting_to_start(self) -> None:
        """The start waits for a peer that is down: the wait so far is no stall."""
        with self._lock:
            self.started = self._clock()

    def waited_on_kafka(self) -> None:
        """A worker is waiting for Kafka (room in its queue, or confirmations); called at least
        every second meanwhile."""
        with self._lock:
            now = self._clock()
            self._waited(now, now)

    def record(self, name: str, ok: bool, detail: str, outage: bool = True) -> None:
        """An active check's result. Kafka found down by ``KAFKA_DOWN_AFTER`` checks in a row
        (not refusing us: ``outage``) is a wait for every worker of this process, from the
        first of them: in a cluster of several processes, one whose sinks have nothing to
        confirm still stops polling while another's epoch waits for Kafka."""
        with self._lock:
            now = self._clock()
            self._results[name] = CheckResult(ok, detail, now)
            if name != KAFKA_CHECK:
                return
            if ok or not outage:
                self._kafka_failing = None
                return
            since, count = self._kafka_failing or (now, 0)
            self._kafka_failing = since, count + 1
            if count + 1 >= KAFKA_DOWN_AFTER:
                self._waited(since, now)

    def _waited(self, start: float, now: float) -> None:
        """Spans starting at most ``WAIT_GAP_S`` after the last one ends join it."""
        if self._waits and start <= self._waits[-1][1] + WAIT_GAP_S:
            last = self._waits[-1]
            last[0], last[1] = min(last[0], start), max(last[1], now)
        else:
            self._waits.append([start, now])

    def liveness(self, stale_s: float) -> dict[str, CheckResult]:
        """Stale when a worker has not polled for ``stale_s``, not counting the time it spent
        waiting for Kafka (however long: ``operators.kafka.CheckedProducer`` waits out an
        outage, and a restart would mend nothing). Only time reported as such a wait is taken
        off, so a stuck worker is still found."""
        now = self._clock()
        with self._lock:
            beats = dict(self._beats)
            waits = _union(self._waits)

        def stale(since: float) -> tuple[float, float]:
            waited = sum(max(0.0, min(to, now) - max(start, since)) for start, to in waits)
            return now - since - waited, waited

        if not beats:
            quiet, waited = stale(self.started)
            detail = f"no worker has polled yet ({quiet:.0f}s)" + _not_counting(waited)
            return {"heartbeat": CheckResult(quiet < stale_s, detail)}
        quiet, waited = max(stale(beat) for beat in beats.values())
        detail = f"{len(beats)} worker(s); stalest heartbeat {max(quiet, 0):.1f}s ago"
        return {"heartbeat": CheckResult(quiet < stale_s, detail + _not_counting(waited))}

    def readiness(self, active: Sequence[ActiveCheck], api: bool) -> dict[str, CheckResult]:
        now = self._clock()
        with self._lock:
            results = dict(self._results)
            started, breaker, auth_at = bool(self._beats), self._breaker, self._auth_failed_at
        checks = {"worker": CheckResult(started, "polling" if started else "not started")}
        for check in active:
            result = results.get(check.name, CheckResult(False, "not checked yet"))
            if result.at and now - result.at > 3 * check.every_s + check.timeout_s:
                result = CheckResult(False, f"last result {now - result.at:.0f}s old", result.at)
            checks[check.name] = result
        if api:
            checks["circuit"] = CheckResult(breaker != "open", f"breaker {breaker or 'unused'}")
        since = now - auth_at if auth_at is not None else None
        if since is not None and since < AUTH_HOLD_S:
            checks["auth"] = CheckResult(False, f"credentials refused {since:.0f}s ago")
        else:
            checks["auth"] = CheckResult(True, "no refusals")
        return checks


STATE = HealthState()
"""The process's one state: a process runs one stage."""


def _not_counting(seconds: float) -> str:
    return f" (not counting {seconds:.0f}s waiting for Kafka)" if seconds >= 1 else ""


def _union(spans: Iterable[list[float]]) -> list[tuple[float, float]]:
    """The spans as disjoint ones: a wait told twice (by a sink and by the check) counts once."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((span[0], span[1]) for span in spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def waited_on_kafka() -> None:
    """A sink's worker waits for Kafka (``on_waiting`` of ``operators.kafka``): no stall."""
    STATE.waited_on_kafka()


def waiting_to_start() -> None:
    """A start held by an outage (``dataflows._process.await_ready``) is alive."""
    STATE.waiting_to_start()


def heartbeat(quiet_until: datetime | None = None) -> None:
    """Called by sources on every poll; ``quiet_until`` when they sleep until a due time."""
    quiet = (quiet_until - datetime.now(UTC)).total_seconds() if quiet_until else 0.0
    STATE.beat(quiet)


def auth_failure() -> None:
    """Credentials were refused (``ErrorCategory.AUTH``): readiness goes red for a while."""
    STATE.auth_failed()


def breaker_changed(state: str) -> None:
    STATE.breaker(state)


# Active checks ------------------------------------------------------------------------------


def kafka_probe(settings: Settings) -> Probe:
    """Broker metadata through one long-lived admin client; brokers that refuse our login or
    TLS raise ``PermissionError`` (a finding, not an outage)."""
    from confluent_kafka import KafkaException

    from claimx_flow.kafka.clients import REFUSED, failure_reason
    from claimx_flow.kafka.topics import admin_client

    admin: Any = None

    async def probe() -> str:
        nonlocal admin
        if admin is None:
            admin = admin_client(settings)
        try:
            metadata = await asyncio.to_thread(admin.list_topics, timeout=PROBE_TIMEOUT_S)
        except KafkaException as exc:
            reason = failure_reason(admin, exc)
            if reason.startswith(REFUSED):
                raise PermissionError(reason) from None
            raise ConnectionError(reason) from None
        return f"{len(metadata.brokers)} broker(s)"

    return probe


def api_probe(settings: Settings) -> Probe:
    """``GET {CLAIMX_API_URL}/health``: any answer below 500 means the API is there."""
    url = f"{settings.claimx_api_url}/health"
    session: aiohttp.ClientSession | None = None

    async def probe() -> str:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S))
        async with session.get(url, allow_redirects=False) as response:
            if response.status >= 500:
                raise ConnectionError(f"GET /health answered HTTP {response.status}")
            return f"HTTP {response.status}"

    return probe


def storage_probe(settings: Settings) -> Probe:
    """Write and delete a probe file where uploads go."""
    from claimx_flow.storage.base import FileStore

    store: FileStore | None = None

    async def probe() -> str:
        nonlocal store
        if store is None:
            from claimx_flow.storage.locations import file_store

            store = file_store(settings)
        await store.check_writable()
        return "writable"

    return probe


def active_checks(stage: str, settings: Settings) -> list[ActiveCheck]:
    spec = catalog.stage(stage)
    checks = [ActiveCheck(KAFKA_CHECK, kafka_probe(settings), every_s=5.0)]
    if spec.calls_api:
        checks.append(ActiveCheck("api", api_probe(settings), every_s=1.0))
    if spec.stores_files:
        checks.append(ActiveCheck("storage", storage_probe(settings), every_s=10.0))
    return checks


# The server ---------------------------------------------------------------------------------


class HealthServer:
    """``/health/live``, ``/health/ready`` and ``/metrics`` on a daemon thread of its own."""

    def __init__(
        self,
        stage: str,
        checks: Sequence[ActiveCheck],
        *,
        host: str,
        port: int,
        stale_s: float,
        state: HealthState = STATE,
        secrets: Sequence[str] = (),
    ) -> None:
        self.stage = stage
        self.secrets = tuple(secrets)
        """Masked from a failed probe's words, which the readiness body shows."""
        self.checks = list(checks)
        self.host = host
        self.port = port
        self.stale_s = stale_s
        self.state = state
        self._bound = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="claimx-health", daemon=True)

    def start(self, timeout_s: float = 10.0) -> HealthServer:
        self._thread.start()
        if not self._bound.wait(timeout_s):
            raise TimeoutError(f"health server not listening after {timeout_s:.0f}s")
        if self._failure is not None:
            raise self._failure
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(), or logged if it comes later
            self._failure = exc
            if self._bound.is_set():
                log.exception("health server stopped")
            self._bound.set()

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        refreshers = [asyncio.create_task(self._refresh(check)) for check in self.checks]
        self._bound.set()
        await asyncio.gather(*refreshers)

    async def _refresh(self, check: ActiveCheck) -> None:
        gauge = metrics.HEALTH_CHECK.labels(stage=self.stage, check=check.name)
        while True:
            try:
                detail = await asyncio.wait_for(check.probe(), check.timeout_s)
                ok = True
            except Exception as exc:
                ok, detail = False, redact(f"{type(exc).__name__}: {exc}", self.secrets)[:300]
                outage = not isinstance(exc, PermissionError)
            else:
                outage = False
            self.state.record(check.name, ok, detail, outage)
            gauge.set(1 if ok else 0)
            await asyncio.sleep(check.every_s)

    def _answer(self, checks: dict[str, CheckResult]) -> web.Response:
        ok = all(result.ok for result in checks.values())
        body = {
            "status": "ok" if ok else "fail",
            "stage": self.stage,
            "checks": {name: {"ok": r.ok, "detail": r.detail} for name, r in checks.items()},
        }
        return web.json_response(body, status=200 if ok else 503)

    async def _live(self, request: web.Request) -> web.Response:
        return self._answer(self.state.liveness(self.stale_s))

    async def _ready(self, request: web.Request) -> web.Response:
        return self._answer(
            self.state.readiness(self.checks, api=catalog.stage(self.stage).calls_api)
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def serve(stage: str, settings: Settings) -> HealthServer | None:
    """Start the stage's health server on its port; 0 turns it off.

    A port that cannot be bound is logged, not fatal: the dataflow's work matters more than
    its probes, and a failing liveness probe will tell Kubernetes soon enough.
    """
    port = settings.claimx_health_port
    if port is None:
        port = catalog.stage(stage).port
    if port == 0:
        return None
    server = HealthServer(
        stage,
        active_checks(stage, settings),
        host=settings.claimx_health_host,
        port=port,
        stale_s=settings.claimx_liveness_stale_seconds,
        secrets=settings.secret_values(),
    )
    try:
        server.start()
    except OSError as exc:
        log.error("%s: health server cannot listen on %s:%d: %s", stage, server.host, port, exc)
        return None
    log.info("%s: health and metrics on http://%s:%d", stage, server.host, server.port)
    return server
