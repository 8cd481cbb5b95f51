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

Problem = Literal["unreachable", "unavailable", "credentials", "unexpected"]


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

    try:
        payload = await client.request("project", "GET", f"/export/project/{project_id}")
    except ClaimXApiError as error:
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
    body = error.message.partition(f"HTTP {error.status}: ")[2]
    if error.status == 404 and body.startswith("{"):
        # ClaimX's own "no such project": reached, and the credentials were accepted.
        return result(None, "reached and authenticated (probe project not found)", 404)
    if error.status == 404:
        return result(
            "unexpected",
            f"{error.message} (does CLAIMX_API_URL end in the API's base path, "
            f"e.g. /service/cxedirest?)",
            404,
        )
    return result("unexpected", error.message, error.status)
