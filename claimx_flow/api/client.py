"""The ClaimX REST client: four calls, each bounded in time, concurrency and retries.

One call = up to ``1 + CLAIMX_API_MAX_RETRIES`` HTTP attempts. Transient failures are retried
inside the call with backoff (or the server's ``Retry-After``); permanent and auth failures are
raised at once. Whatever escapes is a ``ClaimXApiError`` with its category already decided, so
the caller only routes it. Credentials live in one private header value and are redacted from
every message.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pydantic_core

from claimx_flow.api import shapes
from claimx_flow.api.breaker import BreakerState, CircuitBreaker, StateHook
from claimx_flow.api.check import CheckResult, check
from claimx_flow.api.errors import ClaimXApiError, category_for_status
from claimx_flow.api.policy import ApiPolicy
from claimx_flow.api.ratelimit import TokenBucket
from claimx_flow.config import Settings, basic_token
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.models.redaction import redact
from claimx_flow.runtime import health, metrics

TRANSIENT, PERMANENT = ErrorCategory.TRANSIENT, ErrorCategory.PERMANENT
T = TypeVar("T")
_BODY_SNIPPET = 200
_SNIPPET_ROOM = 4096
"""Bytes read past the snippet, so a secret that starts inside it is masked whole."""


class ClaimXApiClient:
    """Async client for one ClaimX API; use ``async with`` so it owns its HTTP session.

    Not thread-safe: create and use it on one event loop (the worker's loop thread).
    """

    def __init__(
        self,
        settings: Settings,
        policy: ApiPolicy | None = None,
        *,
        on_breaker_change: StateHook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = settings.claimx_api_url.rstrip("/")
        self.policy = policy or ApiPolicy.from_settings(settings)
        self.timeout_s = settings.claimx_api_timeout_seconds
        self.max_retries = settings.claimx_api_max_retries
        self.concurrency = settings.claimx_api_concurrency
        self.username = settings.claimx_api_username
        self.breaker = CircuitBreaker(self.policy.breaker, _observed(on_breaker_change))
        _publish_breaker(self.breaker.state, self.breaker.state)
        self.calls: Counter[str] = Counter()
        """Logical calls per endpoint (what "API calls per event" counts)."""
        self.attempts: Counter[str] = Counter()
        """HTTP requests per endpoint, retries included."""
        self._auth_header, self._secrets = _credentials(settings)
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._in_flight = ByteBudget(self.policy.max_bytes_in_flight)
        self._bucket = (
            TokenBucket(self.policy.rate_limit_per_s, self.policy.rate_limit_burst)
            if self.policy.rate_limit_per_s
            else None
        )
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ClaimXApiClient({self.base_url!r}, user={self.username!r})"

    @property
    def has_credentials(self) -> bool:
        return self._auth_header is not None

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    # Session lifecycle ----------------------------------------------------------------------

    async def open(self) -> ClaimXApiClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Accept": "application/json"},
            )
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ClaimXApiClient:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # The four calls -------------------------------------------------------------------------

    async def get_project(self, project_id: str) -> shapes.JsonObject:
        """``{project, teamMembers, companyName}`` for the project."""
        payload = await self._call("project", "GET", f"/export/project/{_segment(project_id)}")
        return _shaped("project", shapes.project_payload, payload)

    async def get_media(
        self, project_id: str, media_ids: list[str] | None = None
    ) -> list[shapes.JsonObject]:
        """The project's media; only ``media_ids`` when given (one selective query)."""
        params = {"mediaIds": ",".join(media_ids)} if media_ids else None
        path = f"/export/project/{_segment(project_id)}/media"
        payload = await self._call("media", "GET", path, params=params)
        return _shaped("media", shapes.media_items, payload)

    async def get_task_assignment(self, assignment_id: str) -> shapes.JsonObject:
        """The assignment with its nested ``customTask`` and ``externalLinkData``."""
        path = f"/customTasks/assignment/{_segment(assignment_id)}"
        payload = await self._call("task_assignment", "GET", path, params={"full": "true"})
        return _shaped("task_assignment", shapes.task_assignment, payload)

    async def get_video_collaboration(
        self,
        project_id: str,
        sender_username: str | None = None,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
    ) -> shapes.JsonObject | None:
        """The project's video collaboration from the report API; None if it has none."""
        endpoint = "video_collaboration"
        if not str(project_id).isdigit():
            raise ClaimXApiError(PERMANENT, endpoint, f"project id {project_id!r} is not numeric")
        body: dict[str, Any] = {"reportType": "VIDEO_COLLABORATION", "projectId": int(project_id)}
        sender = sender_username or self.username
        if sender:
            body["senderUsername"] = sender
        if start is not None:
            body["startDate"] = _iso(start)
        if end is not None:
            body["endDate"] = _iso(end)
        payload = await self._call(endpoint, "POST", "/data", body=body)
        return _shaped(
            endpoint, lambda found: shapes.video_collaboration(found, project_id), payload
        )

    async def status_without_credentials(self, path: str) -> int | None:
        """The HTTP status of ``GET path`` sent with no credentials, or None if none came: the
        check's question, whether the API refuses such a caller. Not counted in the API's
        metrics, where a refusal would read as our credentials failing."""
        if self._session is None:
            raise ClaimxError("ClaimXApiClient used outside `async with` (no HTTP session)")
        try:
            async with self._session.get(self.base_url + path, allow_redirects=False) as answer:
                return answer.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def check(self) -> CheckResult:
        """One request that says whether the API is reachable and takes our credentials."""
        return await check(self)

    # One call: breaker, retries, backoff ----------------------------------------------------

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        self.calls[endpoint] += 1
        metrics.api_call(endpoint)
        for attempt in range(self.max_retries + 1):
            if not self.breaker.acquire():
                raise ClaimXApiError(
                    TRANSIENT,
                    endpoint,
                    f"circuit open after repeated transient failures "
                    f"(retry in {self.breaker.retry_in():.1f}s)",
                    retry_after=self.breaker.retry_in(),
                )
            try:
                payload = await self.request(endpoint, method, path, params, body)
            except ClaimXApiError as error:
                if not error.transient:
                    self.breaker.record_success()  # the API answered
                    raise
                self.breaker.record_failure()
                if attempt == self.max_retries or self.breaker.state is BreakerState.OPEN:
                    raise
                await asyncio.sleep(self.policy.retry_delay(attempt, error.retry_after, self._rng))
                continue
            except BaseException:
                self.breaker.record_abandoned()
                raise
            self.breaker.record_success()
            return payload
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def request(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """One HTTP attempt, no retry: the parsed JSON, or a classified ``ClaimXApiError``."""
        if self._session is None:
            raise ClaimxError("ClaimXApiClient used outside `async with` (no HTTP session)")
        if self._bucket is not None:
            await self._bucket.acquire()
        headers = {"Authorization": self._auth_header} if self._auth_header else {}
        where = f"{method} {path}"
        raw: bytes | None = None  # once read, held in the budget until this call ends
        try:
            async with self._semaphore:
                self.attempts[endpoint] += 1
                try:
                    with metrics.api_attempt(endpoint) as timed:
                        async with self._session.request(
                            method,
                            self.base_url + path,
                            params=params,
                            json=body,
                            headers=headers,
                            allow_redirects=False,
                        ) as response:
                            status = timed.status = response.status
                            raw = await _read_bounded(
                                response, self.policy.max_response_bytes, self._in_flight
                            )
                            retry_header = response.headers.get("Retry-After")
                except TimeoutError:
                    raise self._error(
                        TRANSIENT, endpoint, f"{where}: no answer within {self.timeout_s:g}s"
                    ) from None
                except _TooLarge as exc:
                    raise self._error(
                        PERMANENT, endpoint, f"{where}: {exc}", status=timed.status
                    ) from None
                except _OverBudget as exc:
                    raise self._error(
                        TRANSIENT, endpoint, f"{where}: {exc}", status=timed.status
                    ) from None
                except aiohttp.ClientPayloadError as exc:
                    raise self._error(
                        TRANSIENT, endpoint, f"{where}: truncated body ({exc})"
                    ) from None
                except aiohttp.InvalidURL as exc:
                    raise self._error(PERMANENT, endpoint, f"{where}: invalid URL {exc}") from None
                except aiohttp.ClientError as exc:
                    detail = f"{where}: connection failed ({type(exc).__name__}: {exc})"
                    raise self._error(TRANSIENT, endpoint, detail) from None
            # A gateway's header may be any text: reading it fails neither the answer nor the
            # budget (the bytes are given back, whatever is raised from here on).
            return self._parse(endpoint, where, status, raw, _retry_after(retry_header))
        finally:
            if raw is not None:
                self._in_flight.give(len(raw))

    def _parse(
        self, endpoint: str, where: str, status: int, raw: bytes, retry_after: float | None
    ) -> Any:
        if not 200 <= status < 300:
            category = category_for_status(status) if status >= 400 else PERMANENT
            # Masked before it is cut: a secret the cut splits would no longer be recognised.
            text = raw[: _BODY_SNIPPET + _SNIPPET_ROOM].decode("utf-8", "replace")
            snippet = redact(text, self._secrets).strip()[:_BODY_SNIPPET]
            message = f"{where}: HTTP {status}" + (f": {snippet}" if snippet else "")
            raise self._error(category, endpoint, message, status=status, retry_after=retry_after)
        try:
            return read_json(raw)
        except ValueError:
            raise self._error(
                TRANSIENT, endpoint, f"{where}: malformed JSON ({len(raw)} bytes)", status=status
            ) from None
        except RecursionError:  # asking again gets the same document
            raise self._error(
                PERMANENT, endpoint, f"{where}: JSON nested too deeply", status=status
            ) from None

    def _error(
        self,
        category: ErrorCategory,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ClaimXApiError:
        metrics.api_error(endpoint, category)  # every failed HTTP attempt passes here
        return ClaimXApiError(
            category,
            endpoint,
            redact(message, self._secrets),
            status=status,
            retry_after=retry_after,
        )


def read_json(raw: bytes) -> Any:
    """The document in ``raw``, exactly as ``json.loads`` reads it, in about half its time.

    A media answer is some 40 KB, and its parse was a third of a call's CPU. pydantic-core's
    parser (jiter) reads what it accepts as ``json`` does; what it refuses (a lone surrogate,
    a byte-order mark, UTF-16, a nesting past its limit) is read again by ``json``, so every
    refusal and its category stay ``json``'s. ``tests/test_api_json.py`` holds the two to the
    same answers on generated documents and bytes.
    """
    try:
        return pydantic_core.from_json(raw, cache_strings="keys")
    except ValueError:
        return json.loads(raw)


class _TooLarge(Exception):
    """A response body over the policy's limit."""


class _OverBudget(Exception):
    """A response body that would pass the bytes all concurrent calls may hold at once."""


class ByteBudget:
    """Bytes held by response bodies across the client's concurrent calls (one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


async def _read_bounded(response: aiohttp.ClientResponse, limit: int, budget: ByteBudget) -> bytes:
    """The body, refusing one over ``limit`` bytes before or while it arrives, never after,
    and holding its bytes in ``budget`` (given back by the caller once it is parsed).

    The API's answer is untrusted input like any message: an endless or enormous body must
    cost a bounded amount of memory, announced or not (and after decompression), and so must
    many large answers at once. Waiting for room could deadlock two half-read bodies, so a body
    that finds none fails (transient) instead.
    """
    announced = response.content_length
    if announced is not None and announced > limit:
        raise _TooLarge(f"response of {announced} bytes over the limit of {limit}")
    body = bytearray()
    try:
        async for chunk in response.content.iter_chunked(64 * 1024):
            if not budget.take(len(chunk)):
                raise _OverBudget(
                    f"responses in flight over {budget.limit} bytes; this one is tried again"
                )
            body += chunk
            if len(body) > limit:
                raise _TooLarge(f"response over the limit of {limit} bytes")
    except BaseException:
        budget.give(len(body))
        raise
    return bytes(body)


def _observed(hook: StateHook | None) -> StateHook:
    """``hook`` plus the breaker's state gauge and readiness check."""

    def on_change(old: BreakerState, new: BreakerState) -> None:
        _publish_breaker(old, new)
        if hook is not None:
            hook(old, new)

    return on_change


def _publish_breaker(old: BreakerState, new: BreakerState) -> None:
    metrics.breaker_state(new.value)
    health.breaker_changed(new.value)


def _credentials(settings: Settings) -> tuple[str | None, list[str]]:
    """The ``Authorization`` value and every form of the secret that must never be printed."""
    if settings.claimx_api_token is not None:
        token = settings.claimx_api_token.get_secret_value()
        return f"Basic {token}", [token]
    if settings.claimx_api_username and settings.claimx_api_password is not None:
        password = settings.claimx_api_password.get_secret_value()
        token = basic_token(settings.claimx_api_username, password)
        return f"Basic {token}", [password, token]
    return None, []


def _segment(entity_id: str) -> str:
    return quote(str(entity_id), safe="")


def _iso(moment: datetime | date | str) -> str:
    return moment if isinstance(moment, str) else moment.isoformat()


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - datetime.now(moment.tzinfo).timestamp())
    except (TypeError, ValueError, OverflowError):  # no date a datetime holds: no delay
        return None


def _shaped(endpoint: str, normalise: Callable[[Any], T], payload: Any) -> T:
    try:
        return normalise(payload)
    except shapes.ShapeError as exc:
        raise ClaimXApiError(PERMANENT, endpoint, f"unexpected response: {exc}") from None
