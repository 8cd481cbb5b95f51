"""Can we reach the ClaimX API with these credentials? One plain answer for operators.

One request, no retries and no circuit breaker: the point is to say at once which of four
things is wrong (unreachable, unavailable for now, wrong credentials, unexpected answer), not to
ride it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from claimx_flow.api import shapes
from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.errors import ErrorCategory

if TYPE_CHECKING:
    from claimx_flow.api.client import ClaimXApiClient

Problem = Literal["unreachable", "unavailable", "credentials", "unexpected", "unproven"]
"""``unproven``: the API answered, but nothing in the answer shows the credentials were
checked (a missing probe project, answered alike without them)."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    problem: Problem | None
    detail: str
    status: int | None
    elapsed_ms: float


_Result = Callable[[Problem | None, str, int | None], CheckResult]


async def check(client: ClaimXApiClient) -> CheckResult:
    """Fetch the probe project once and say what its answer means."""
    project_id = client.policy.check_project_id
    started = time.monotonic()

    def result(problem: Problem | None, detail: str, status: int | None) -> CheckResult:
        elapsed = (time.monotonic() - started) * 1000
        return CheckResult(problem is None, problem, detail, status, elapsed)

    path = f"/export/project/{project_id}"
    try:
        payload = await client.request("project", "GET", path)
    except ClaimXApiError as error:
        if error.status == 404 and _json_body(error) and client.has_credentials:
            return await _missing_probe(client, path, project_id, result)
        return _explain(client, error, result)
    try:
        shapes.project_payload(payload)
    except shapes.ShapeError as exc:
        return result("unexpected", f"the project call answered, but {exc}", 200)
    return result(None, f"project {project_id} fetched", 200)


def _explain(client: ClaimXApiClient, error: ClaimXApiError, result: _Result) -> CheckResult:
    if error.category is ErrorCategory.AUTH:
        if not client.has_credentials:
            hint = "no credentials set: CLAIMX_API_USERNAME/PASSWORD or CLAIMX_API_TOKEN"
        else:
            hint = f"user {client.username!r} rejected" if client.username else "token rejected"
        return result("credentials", f"HTTP {error.status}: {hint}", error.status)
    if error.status is None:
        return result("unreachable", error.message, None)
    if error.status == 429 or error.status >= 500:  # up, but not answering for now
        return result("unavailable", error.message, error.status)
    if error.status == 404:
        return result(
            "unexpected",
            f"{error.message} (does CLAIMX_API_URL end in the API's base path, "
            f"e.g. /service/cxedirest?)",
            404,
        )
    return result("unexpected", error.message, error.status)


def _json_body(error: ClaimXApiError) -> bool:
    return error.message.partition(f"HTTP {error.status}: ")[2].startswith("{")


async def _missing_probe(
    client: ClaimXApiClient, path: str, project_id: str, result: _Result
) -> CheckResult:
    """A JSON 404 for the probe project proves nothing by itself: a gateway in front of a wrong
    base path answers so for any path, whatever the credentials. The same request without
    credentials tells: refused (401, 403, or a redirect to a login), ours were accepted;
    answered alike, the 404 is unproven, and so is the base path."""
    bare = await client.status_without_credentials(path)
    if bare is not None and (bare in (401, 403) or 300 <= bare < 400):
        return result(
            None,
            f"reached and authenticated (probe project {project_id} not found; "
            f"refused without credentials, HTTP {bare})",
            404,
        )
    if bare is None or bare == 429 or bare >= 500:
        return result(
            "unavailable",
            f"project {project_id} not found, and the same request without credentials got "
            f"{'no answer' if bare is None else f'HTTP {bare}'}: try again",
            bare,
        )
    return result(
        "unproven",
        f"project {project_id} not found, and answered alike without credentials: neither the "
        f"credentials nor the base path is proven (does CLAIMX_API_URL end in the API's base "
        f"path, e.g. /service/cxedirest? probe a project that exists: claimx api check "
        f"--project-id)",
        404,
    )
