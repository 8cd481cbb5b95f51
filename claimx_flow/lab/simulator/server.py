"""The simulator object and its aiohttp application: auth, fault injection, counting.

Handlers only compute answers (``handlers.py``); everything that makes a request go wrong on
purpose happens here, in one middleware, so every endpoint misbehaves the same way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from claimx_flow.lab.simulator.faults import FaultInjector, Faults, Injected, Target
from claimx_flow.lab.simulator.signing import UrlSigner
from claimx_flow.lab.simulator.stats import API_ENDPOINTS, MEDIA_DOWNLOAD, Stats

DEFAULT_BASE_PATH = "/service/cxedirest"
DEFAULT_USERNAME = "claimx-sim"
DEFAULT_PASSWORD = "claimx-sim-password"
DEFAULT_MEDIA_BYTES = 64 * 1024
DEFAULT_URL_TTL_MS = 24 * 3600 * 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything fixed at start; faults can change later through ``Simulator.set_faults``."""

    seed: int = 0
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    base_path: str = DEFAULT_BASE_PATH
    media_bytes: int = DEFAULT_MEDIA_BYTES
    url_ttl_ms: int = DEFAULT_URL_TTL_MS
    secret: str | None = None
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        base = "/" + self.base_path.strip("/") if self.base_path.strip("/") else ""
        object.__setattr__(self, "base_path", base)


class Simulator:
    """One simulated ClaimX API: its data, its faults, its counters.

    ``set_faults`` and ``reset`` may be called from any thread; they take effect for the next
    request. ``stats`` is live.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.stats = Stats()
        self.injector = FaultInjector(self.config.faults, self.config.seed)
        secret = self.config.secret or f"claimx-simulator-{self.config.seed}"
        self.signer = UrlSigner(hashlib.sha256(secret.encode()).digest())
        token = f"{self.config.username}:{self.config.password}".encode()
        self._expected_auth = "Basic " + base64.b64encode(token).decode()

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def faults(self) -> Faults:
        return self.injector.current()

    def set_faults(self, **changes: Any) -> None:
        """Change some knobs, e.g. ``set_faults(error_rates={503: 0.5})``; the rest stay."""
        self.injector.update(changes)

    def replace_faults(self, faults: Faults) -> None:
        self.injector.set(faults)

    def reset(self) -> None:
        """Back to the faults given at start, with every counter at zero."""
        self.injector.reset()
        self.stats.reset()

    def authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        return hmac.compare_digest(header.encode(errors="replace"), self._expected_auth.encode())

    def ttl_ms(self) -> int:
        override = self.injector.faults.url_ttl_ms
        return self.config.url_ttl_ms if override is None else override


SIMULATOR = web.AppKey("simulator", Simulator)
_SERVED = {*API_ENDPOINTS, MEDIA_DOWNLOAD}


@web.middleware
async def served_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, slow down, break or refuse a request to the API or a media file."""
    endpoint = request.match_info.route.name
    if endpoint not in _SERVED:
        return await handler(request)
    sim = request.app[SIMULATOR]
    target: Target = "media" if endpoint == MEDIA_DOWNLOAD else "api"
    with sim.stats.track(endpoint):
        response = await _serve(sim, request, handler, target)
    dropped = request.transport is None or request.transport.is_closing()
    sim.stats.record_status(endpoint, 0 if dropped else response.status)
    return response


async def _serve(
    sim: Simulator, request: web.Request, handler: Handler, target: Target
) -> web.StreamResponse:
    delay = sim.injector.latency_s(target)
    if delay:
        await asyncio.sleep(delay)
    injected = sim.injector.decide(target)
    if injected is not None:
        sim.stats.record_fault(str(injected))
    if injected == "timeout":
        await asyncio.sleep(sim.injector.faults.hang_s)
    elif injected == "disconnect":
        return _disconnect(request)
    elif isinstance(injected, int):
        return _error_response(injected, sim.injector.faults.retry_after_s)
    if target == "api" and not sim.authorized(request.headers.get("Authorization")):
        return web.json_response(
            {"error": "Unauthorized", "status": 401},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="ClaimX"'},
        )
    response = await handler(request)
    texts = sim.injector.faults.retry_after_texts
    if target == "api" and texts and not response.prepared:
        response.headers["Retry-After"] = texts[sim.stats.api_calls % len(texts)]
    return await _mangle(request, response, injected)


def _disconnect(request: web.Request) -> web.StreamResponse:
    """Drop the connection without an answer, as an unreachable or crashing server would."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


def _error_response(status: int, retry_after_s: float) -> web.Response:
    headers = {}
    if status == 429:
        seconds = int(retry_after_s) if retry_after_s == int(retry_after_s) else retry_after_s
        headers["Retry-After"] = str(seconds)
    return web.json_response(
        {"error": f"injected {status}", "status": status}, status=status, headers=headers
    )


async def _mangle(
    request: web.Request, response: web.StreamResponse, injected: Injected | None
) -> web.StreamResponse:
    """Malformed: half the JSON with status 200. Truncated: a promised length never delivered."""
    if injected not in ("malformed", "truncated") or not isinstance(response, web.Response):
        return response
    body = response.body if isinstance(response.body, bytes) else b"{}"
    cut = body[: max(1, len(body) // 2)]
    if injected == "malformed":
        return web.Response(body=cut, status=200, content_type="application/json")
    truncated = web.StreamResponse(status=200, headers={"Content-Type": response.content_type})
    truncated.content_length = len(body)
    await truncated.prepare(request)
    await truncated.write(cut)
    if request.transport is not None:
        request.transport.close()
    return truncated
