"""The ClaimX API client against the simulator over real HTTP: retries, Retry-After, the
circuit breaker, error classification, response-shape tolerance, limits, and secrecy."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import pickle
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from claimx_flow.api import (
    ApiPolicy,
    BreakerPolicy,
    BreakerState,
    ClaimXApiClient,
    ClaimXApiError,
)
from claimx_flow.cli import app
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.lab.process import free_port
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as simdata
from claimx_flow.startup.preflight import run_checks
from tests.simulator_fixtures import SIMULATOR_PASSWORD, SIMULATOR_SEED

T = TypeVar("T")
FAST = ApiPolicy(backoff_base_s=0.01, backoff_cap_s=0.05, breaker=BreakerPolicy(open_seconds=0.3))


def with_client(
    settings: Settings,
    use: Callable[[ClaimXApiClient], Awaitable[T]],
    policy: ApiPolicy = FAST,
    **hooks: Any,
) -> T:
    async def main() -> T:
        async with ClaimXApiClient(settings, policy, **hooks) as client:
            return await use(client)

    return asyncio.run(main())


def failure(settings: Settings, use: Callable[[ClaimXApiClient], Awaitable[Any]]) -> ClaimXApiError:
    with pytest.raises(ClaimXApiError) as caught:
        with_client(settings, use)
    return caught.value


# The calls and their shapes -------------------------------------------------------------


@pytest.mark.parametrize("shape", ["wrapped", "bare", "mixed"])
def test_project_in_any_shape(sim: RunningSimulator, api_settings: Settings, shape: str) -> None:
    sim.set_faults(project_shape=shape)
    found = with_client(api_settings, lambda c: c.get_project("8080"))
    expected = simdata.project_response(SIMULATOR_SEED, 8080)["data"]
    assert found == expected


@pytest.mark.parametrize("shape", ["list", "data", "media"])
def test_media_in_any_shape(sim: RunningSimulator, api_settings: Settings, shape: str) -> None:
    sim.set_faults(media_shape=shape)
    media = with_client(api_settings, lambda c: c.get_media("8080"))
    assert [m["mediaID"] for m in media] == simdata.media_ids(SIMULATOR_SEED, 8080)


def test_selective_media_query(sim: RunningSimulator, api_settings: Settings) -> None:
    ids = simdata.media_ids(SIMULATOR_SEED, 8081)
    wanted = [str(ids[2]), str(ids[5]), "123"]
    media = with_client(api_settings, lambda c: c.get_media("8081", wanted))
    assert [m["mediaID"] for m in media] == [ids[2], ids[5]]
    assert sim.stats.requests["media"] == 1


@pytest.mark.parametrize(
    "shape", ["object", "list", "data", "collaborations", "videoCollaboration"]
)
def test_video_report_in_any_shape_picks_the_projects_item(
    sim: RunningSimulator, api_settings: Settings, shape: str
) -> None:
    sim.set_faults(video_shape=shape)
    video = with_client(
        api_settings, lambda c: c.get_video_collaboration("8082", start="2024-01-01")
    )
    assert video is not None and video["claimId"] == 8082
    assert video["videoCollaborationId"] == simdata.video_collaboration_id(8082)


def test_task_assignment_is_full(sim: RunningSimulator, api_settings: Settings) -> None:
    task_id = simdata.task_assignment_ids(SIMULATOR_SEED, 8083)[0]
    task = with_client(api_settings, lambda c: c.get_task_assignment(str(task_id)))
    assert task["assignmentId"] == task_id
    assert task["customTask"]["taskId"] == task["taskId"]
    assert task["externalLinkData"]["linkId"] == task_id


def test_counters_count_calls_and_attempts(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(fail_next=[503])

    async def use(client: ClaimXApiClient) -> ClaimXApiClient:
        await client.get_project("1")
        await client.get_project("2")
        await client.get_media("2")
        return client

    client = with_client(api_settings, use)
    assert client.calls == {"project": 2, "media": 1}
    assert client.attempts == {"project": 3, "media": 1}
    assert sim.stats.api_calls == 4


# Retries, backoff, Retry-After ---------------------------------------------------------------


def test_transient_failures_are_retried(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(fail_next=[503, 500, "malformed"])
    project = with_client(api_settings, lambda c: c.get_project("7"))
    assert project["project"]["projectId"] == 7
    assert sim.stats.requests["project"] == 4


def test_retries_are_bounded(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(error_rates={502: 1.0})
    error = failure(api_settings, lambda c: c.get_project("7"))
    assert error.category is ErrorCategory.TRANSIENT and error.status == 502
    assert sim.stats.requests["project"] == 1 + api_settings.claimx_api_max_retries


def test_backoff_grows_exponentially_with_jitter(
    sim: RunningSimulator, api_settings: Settings
) -> None:
    sim.set_faults(fail_next=[503, 503, 503])
    policy = ApiPolicy(backoff_base_s=0.1, backoff_cap_s=1.0)
    started = time.monotonic()
    with_client(api_settings, lambda c: c.get_project("7"), policy)
    # Full jitter: anywhere in [0, 0.1] + [0, 0.2] + [0, 0.4].
    assert time.monotonic() - started < 0.7 + 1.5  # and the load of a machine shared
    delays = [policy.retry_delay(2, None, random.Random(i)) for i in range(200)]
    assert 0 <= min(delays) < 0.05 and 0.35 < max(delays) <= 0.4


def test_retry_after_is_honoured(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(fail_next=[429], retry_after_s=1)
    started = time.monotonic()
    with_client(api_settings, lambda c: c.get_project("7"))
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5.0  # waited out Retry-After (1 s), and not much more
    assert sim.stats.statuses["project"] == {429: 1, 200: 1}


def test_retry_after_is_capped(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(fail_next=[429], retry_after_s=30)
    policy = ApiPolicy(retry_after_cap_s=0.2)
    started = time.monotonic()
    with_client(api_settings, lambda c: c.get_project("7"), policy)
    assert 0.2 <= time.monotonic() - started < 3.0  # far from the 30 s asked


def test_429_on_the_last_attempt_reports_retry_after(
    sim: RunningSimulator, api_settings: Settings
) -> None:
    sim.set_faults(fail_next=[429], retry_after_s=12)
    no_retries = api_settings.model_copy(update={"claimx_api_max_retries": 0})
    error = failure(no_retries, lambda c: c.get_project("7"))
    assert error.category is ErrorCategory.TRANSIENT
    assert error.status == 429 and error.retry_after == 12


# Classification ----------------------------------------------------------------------------


def test_not_found_is_permanent_and_not_retried(
    sim: RunningSimulator, api_settings: Settings
) -> None:
    sim.set_faults(not_found_projects=["404404"])
    error = failure(api_settings, lambda c: c.get_project("404404"))
    assert error.category is ErrorCategory.PERMANENT and error.status == 404
    assert error.endpoint == "project"
    assert sim.stats.requests["project"] == 1


def test_bad_request_is_permanent(sim: RunningSimulator, api_settings: Settings) -> None:
    error = failure(api_settings, lambda c: c.get_project("not-a-number"))
    assert error.category is ErrorCategory.PERMANENT and error.status == 400
    error = failure(api_settings, lambda c: c.get_video_collaboration("x1"))
    assert error.category is ErrorCategory.PERMANENT


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_auth_and_not_retried(
    sim: RunningSimulator, api_settings: Settings, status: int
) -> None:
    sim.set_faults(error_rates={status: 1.0})
    error = failure(api_settings, lambda c: c.get_media("1"))
    assert error.category is ErrorCategory.AUTH and error.status == status
    assert sim.stats.requests["media"] == 1


def test_wrong_password_is_auth(sim: RunningSimulator, api_settings: Settings) -> None:
    wrong = api_settings.model_copy(update={"claimx_api_password": SecretStr("nope")})
    error = failure(wrong, lambda c: c.get_project("1"))
    assert error.category is ErrorCategory.AUTH and error.status == 401


def test_a_ready_token_is_sent_as_basic(sim: RunningSimulator, api_settings: Settings) -> None:
    token = base64.b64encode(f"sim-user:{SIMULATOR_PASSWORD}".encode()).decode()
    by_token = api_settings.model_copy(
        update={"claimx_api_token": SecretStr(token), "claimx_api_password": None}
    )
    assert with_client(by_token, lambda c: c.get_project("3"))["project"]["projectId"] == 3


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        ("timeout", "no answer within"),
        ("malformed", "malformed JSON"),
        ("truncated", "truncated body"),
        ("disconnect", "connection failed"),
    ],
)
def test_transport_failures_are_transient(
    sim: RunningSimulator, api_settings: Settings, fault: str, text: str
) -> None:
    # A dropped connection is re-sent once by aiohttp itself (GET is idempotent): stay down.
    faults: dict[str, Any] = {"down": True} if fault == "disconnect" else {"fail_next": [fault]}
    sim.set_faults(hang_s=10, **faults)
    quick = api_settings.model_copy(
        update={"claimx_api_max_retries": 0, "claimx_api_timeout_seconds": 0.3}
    )
    started = time.monotonic()
    error = failure(quick, lambda c: c.get_project("1"))
    assert error.category is ErrorCategory.TRANSIENT and text in str(error)
    assert time.monotonic() - started < 2


def test_unreachable_is_transient(api_settings: Settings) -> None:
    nowhere = api_settings.model_copy(
        update={"claimx_api_url": f"http://127.0.0.1:{free_port()}", "claimx_api_max_retries": 1}
    )
    error = failure(nowhere, lambda c: c.get_project("1"))
    assert error.category is ErrorCategory.TRANSIENT and error.status is None


def test_errors_pickle_with_their_fields(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(fail_next=[429], retry_after_s=3)
    no_retries = api_settings.model_copy(update={"claimx_api_max_retries": 0})
    error = failure(no_retries, lambda c: c.get_project("1"))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.category, copy.status, copy.endpoint, copy.retry_after, str(copy)) == (
        error.category, error.status, error.endpoint, error.retry_after, str(error)
    )  # fmt: skip


# Circuit breaker ---------------------------------------------------------------------------


def test_breaker_opens_after_five_failures_and_recovers(
    sim: RunningSimulator, api_settings: Settings
) -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    no_retries = api_settings.model_copy(update={"claimx_api_max_retries": 0})
    sim.set_faults(fail_next=[503] * 5)

    async def use(client: ClaimXApiClient) -> None:
        for _ in range(5):
            with pytest.raises(ClaimXApiError, match="HTTP 503"):
                await client.get_project("1")
        assert client.breaker_state is BreakerState.OPEN
        with pytest.raises(ClaimXApiError, match="circuit open") as caught:
            await client.get_project("1")
        assert caught.value.category is ErrorCategory.TRANSIENT
        assert 0 < (caught.value.retry_after or 0) <= 0.3
        assert sim.stats.requests["project"] == 5  # refused without a request
        await asyncio.sleep(0.35)
        assert client.breaker_state is BreakerState.HALF_OPEN
        await client.get_project("1")
        assert client.breaker_state is BreakerState.HALF_OPEN
        await client.get_project("1")
        assert client.breaker_state is BreakerState.CLOSED

    with_client(no_retries, use, on_breaker_change=lambda old, new: changes.append((old, new)))
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_half_open_allows_bounded_trials_and_a_failure_reopens(
    sim: RunningSimulator, api_settings: Settings
) -> None:
    no_retries = api_settings.model_copy(update={"claimx_api_max_retries": 0})
    sim.set_faults(error_rates={500: 1.0})

    async def use(client: ClaimXApiClient) -> None:
        for _ in range(5):
            with pytest.raises(ClaimXApiError):
                await client.get_project("1")
        await asyncio.sleep(0.35)
        sim.set_faults(error_rates={}, latency_ms=200)
        before = sim.stats.requests["project"]
        outcomes = await asyncio.gather(
            *(client.get_project("1") for _ in range(5)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, ClaimXApiError)]
        assert len(refused) == 3 and all("circuit open" in str(o) for o in refused)
        assert sim.stats.requests["project"] - before == 2
        assert client.breaker_state is BreakerState.CLOSED
        sim.set_faults(error_rates={500: 1.0}, latency_ms=0)
        for _ in range(5):
            with pytest.raises(ClaimXApiError):
                await client.get_project("1")
        await asyncio.sleep(0.35)
        with pytest.raises(ClaimXApiError, match="HTTP 500"):
            await client.get_project("1")  # the trial fails
        assert client.breaker_state is BreakerState.OPEN

    with_client(no_retries, use)


def test_permanent_errors_do_not_open_the_breaker(
    sim: RunningSimulator, api_settings: Settings
) -> None:
    sim.set_faults(not_found_rate=1.0)

    async def use(client: ClaimXApiClient) -> BreakerState:
        for _ in range(8):
            with pytest.raises(ClaimXApiError):
                await client.get_project("1")
        return client.breaker_state

    assert with_client(api_settings, use) is BreakerState.CLOSED


# Limits ------------------------------------------------------------------------------------


def test_concurrency_limit_is_respected(sim: RunningSimulator, api_settings: Settings) -> None:
    sim.set_faults(latency_ms=80)
    three = api_settings.model_copy(update={"claimx_api_concurrency": 3})

    async def use(client: ClaimXApiClient) -> None:
        await asyncio.gather(*(client.get_project(str(i)) for i in range(12)))

    with_client(three, use)
    assert sim.stats.max_in_flight == 3
    assert sim.stats.requests["project"] == 12


def test_rate_limit_spaces_calls(sim: RunningSimulator, api_settings: Settings) -> None:
    policy = ApiPolicy(rate_limit_per_s=20, rate_limit_burst=1)

    async def use(client: ClaimXApiClient) -> None:
        await asyncio.gather(*(client.get_project(str(i)) for i in range(6)))

    started = time.monotonic()
    with_client(api_settings, use, policy)
    assert time.monotonic() - started >= 0.24


# Secrets -----------------------------------------------------------------------------------


def test_credentials_never_appear_in_errors(sim: RunningSimulator, api_settings: Settings) -> None:
    secret = "Hunter2-very-secret"
    wrong = api_settings.model_copy(update={"claimx_api_password": SecretStr(secret)})
    token = base64.b64encode(f"sim-user:{secret}".encode()).decode()
    by_token = api_settings.model_copy(update={"claimx_api_token": SecretStr(token)})
    texts = []
    for settings in (wrong, by_token):
        for faults in ({}, {"fail_next": [500]}, {"down": True}):
            sim.reset()
            sim.set_faults(**faults)
            quick = settings.model_copy(update={"claimx_api_max_retries": 0})
            error = failure(quick, lambda c: c.get_project("1"))
            texts += [str(error), repr(error), error.message, repr(error.args)]
        client = ClaimXApiClient(settings)
        texts.append(repr(client))
    for text in texts:
        assert secret not in text and token not in text


# check() and `claimx api check` -----------------------------------------------------------


def test_check_says_what_is_wrong(sim: RunningSimulator, api_settings: Settings) -> None:
    ok = with_client(api_settings, lambda c: c.check())
    assert ok.ok and ok.problem is None and ok.status == 200

    wrong = api_settings.model_copy(update={"claimx_api_password": SecretStr("nope")})
    assert with_client(wrong, lambda c: c.check()).problem == "credentials"

    nowhere = api_settings.model_copy(update={"claimx_api_url": f"http://127.0.0.1:{free_port()}"})
    assert with_client(nowhere, lambda c: c.check()).problem == "unreachable"

    no_base = api_settings.model_copy(update={"claimx_api_url": sim.origin})
    assert with_client(no_base, lambda c: c.check()).problem == "unexpected"

    sim.set_faults(fail_next=["malformed"])
    assert with_client(api_settings, lambda c: c.check()).problem == "unexpected"

    sim.set_faults(fail_next=[503])
    assert with_client(api_settings, lambda c: c.check()).problem == "unavailable"

    sim.set_faults(not_found_projects=["1"])
    refusals = _auth_errors()
    missing = with_client(api_settings, lambda c: c.check())  # the simulator refuses a bare GET
    assert missing.ok and missing.status == 404
    assert "refused without credentials, HTTP 401" in missing.detail
    # The refusal asked for is no error of ours: counted, it paged "check the credentials"
    # (ClaimXAPIErrorRateHigh) while a stage's start checked again every 5 s.
    assert _auth_errors() == refusals


def _auth_errors() -> float:
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == "claimx_api_errors_total" and sample.labels.get("category") == "auth"
    )


class _NotFoundGateway(http.server.BaseHTTPRequestHandler):
    """A gateway in front of a wrong base path: a JSON 404 for every path, whatever the
    credentials (the default answer of many gateways and frameworks)."""

    def do_GET(self) -> None:
        body = b'{"message":"Resource not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_json_404_answered_alike_without_credentials_proves_nothing(
    api_settings: Settings, clean_env: pytest.MonkeyPatch
) -> None:
    """Once taken for "reached and authenticated": a wrong base path and a wrong password
    passed the check, and a stage started on them. Unproven now, exit 1; a stage still starts
    (the probe project may just not exist there), with the check's warning."""
    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundGateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{gateway.server_address[1]}/wrong/base"
        settings = api_settings.model_copy(update={"claimx_api_url": url})
        result = with_client(settings, lambda c: c.check())
        assert (result.ok, result.problem, result.status) == (False, "unproven", 404)

        clean_env.setenv("CLAIMX_API_URL", url)
        clean_env.setenv("CLAIMX_API_USERNAME", "sim-user")
        clean_env.setenv("CLAIMX_API_PASSWORD", "Wrong-Secret-123")
        cli = CliRunner().invoke(app, ["api", "check"])
        assert cli.exit_code == 1 and "did not show it checked the credentials" in cli.output
        assert "Wrong-Secret-123" not in cli.output

        (api,) = [c for c in run_checks(settings, ("enrich",)) if c.name == "ClaimX API"]
        assert not api.ok and not api.blocking and "base path" in api.detail
    finally:
        gateway.shutdown()
        gateway.server_close()


def test_cli_api_check(
    sim: RunningSimulator, api_settings: Settings, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("CLAIMX_API_URL", sim.api_url)
    clean_env.setenv("CLAIMX_API_USERNAME", "sim-user")
    clean_env.setenv("CLAIMX_API_PASSWORD", SIMULATOR_PASSWORD)
    runner = CliRunner()
    good = runner.invoke(app, ["api", "check"])
    assert good.exit_code == 0, good.output
    assert "reachable" in good.output and SIMULATOR_PASSWORD not in good.output

    clean_env.setenv("CLAIMX_API_PASSWORD", "Wrong-Secret-123")
    bad = runner.invoke(app, ["api", "check"])
    assert bad.exit_code == 1
    assert "rejected the credentials" in bad.output and "Wrong-Secret-123" not in bad.output

    as_json = runner.invoke(app, ["api", "check", "--output", "json"])
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert (document["ok"], document["problem"], document["status"]) == (False, "credentials", 401)
    assert as_json.stderr.startswith("error:") and "rejected the credentials" in as_json.stderr

    clean_env.setenv("CLAIMX_API_URL", f"http://127.0.0.1:{free_port()}")
    down = runner.invoke(app, ["api", "check"])  # a broken peer: one red line, exit 2
    assert down.exit_code == 2 and "cannot reach" in down.output
    assert len(down.output.strip().splitlines()) == 1 and down.output.startswith("error:")

    clean_env.setenv("CLAIMX_API_URL", "http://ops:Url-Secret-9@127.0.0.1:1/x")
    in_url = runner.invoke(app, ["api", "check"])  # credentials go in their own variables
    assert isinstance(in_url.exception, ClaimxError)  # ``main`` makes it one red line, exit 2
    assert "CLAIMX_API_URL: must not hold a user or password" in str(in_url.exception)
    assert "Url-Secret-9" not in str(in_url.exception) + in_url.output


@pytest.mark.parametrize(
    "text",
    [
        "01 Jan 99999999999999999999 00:00:00 GMT",  # a year past any datetime
        "Mon, 01 Jan 0001 00:00:00 GMT",
        "1e309",
        "-5",
        "nan",
        "soon",
        "",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ],
)
def test_a_retry_after_of_any_text_fails_no_answer_and_holds_no_bytes(
    sim: RunningSimulator, api_settings: Settings, text: str
) -> None:
    """A ``Retry-After`` the client cannot read (a gateway's, on a 200 too) is no delay: the
    answer is read, and the bytes it held are given back (they were kept for good once, and
    enough such answers left no room for any call)."""
    sim.set_faults(retry_after_texts=[text])

    async def call() -> tuple[Any, int]:
        async with ClaimXApiClient(api_settings) as client:
            answer = await client.get_project("7")
            return answer, client._in_flight.used

    answer, held = asyncio.run(call())
    assert answer and held == 0
