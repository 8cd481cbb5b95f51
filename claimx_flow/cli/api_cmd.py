"""``claimx api check``: can the pipeline reach ClaimX with its credentials?"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.markup import escape

from claimx_flow.api import ApiPolicy, CheckResult, ClaimXApiClient
from claimx_flow.config import Settings, load_settings
from claimx_flow.models.redaction import mask_url_queries, one_line
from claimx_flow.terminal import EXIT_ERROR, OUTPUT_OPTION, Output, emit_json, print_error

app = typer.Typer(help="Talk to the ClaimX API.")


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console(soft_wrap=True)


_HEADLINES = {
    "unreachable": "cannot reach the ClaimX API",
    "unavailable": "the ClaimX API is unavailable for now",
    "credentials": "the ClaimX API rejected the credentials",
    "unexpected": "unexpected response from the ClaimX API",
    "unproven": "the ClaimX API answered, but did not show it checked the credentials",
}
EXIT_REFUSED = 1
"""Reached, but the credentials were refused or the answer was not ClaimX's: a finding."""
_BROKEN = {"unreachable", "unavailable"}


@app.callback()
def _api() -> None:
    """Talk to the ClaimX API."""


@app.command()
def check(
    project_id: str = typer.Option("1", help="Project to fetch as the probe."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Test the connection and credentials with one request.

    Exit 0 when reached and authenticated, 2 when the API cannot be reached or is not
    answering (one red line), 1 when it refused the credentials, answered something else, or
    answered a missing probe project alike without credentials (unproven: probe a project that
    exists with --project-id).
    """
    settings = load_settings(require_api=True, require_kafka=False)  # the API alone, no Kafka
    result = asyncio.run(_check(settings, ApiPolicy(check_project_id=project_id)))
    where, who = mask_url_queries(settings.claimx_api_url), _who(settings)
    detail = one_line(result.detail)  # an answer's snippet may be an HTML page
    code = 0 if result.ok else EXIT_ERROR if result.problem in _BROKEN else EXIT_REFUSED
    if output is Output.JSON:
        emit_json(
            {
                "url": where,
                "as": who,
                "ok": result.ok,
                "problem": result.problem,
                "status": result.status,
                "detail": detail,
                "elapsed_ms": round(result.elapsed_ms),
            }
        )
    if not result.ok:  # on stderr, with JSON too: stdout stays the document
        headline = _HEADLINES[result.problem or "unexpected"]
        print_error(f"{headline} at {where} as {who}: {detail}")
    elif output is not Output.JSON:
        console().print(
            f"[green]✓[/] {escape(where)} reachable as {escape(who)}: {escape(detail)} "
            f"({result.elapsed_ms:.0f} ms)",
            highlight=False,
        )
    if code:
        raise typer.Exit(code)


async def _check(settings: Settings, policy: ApiPolicy) -> CheckResult:
    async with ClaimXApiClient(settings, policy) as client:
        return await client.check()


def _who(settings: Settings) -> str:
    if settings.claimx_api_token is not None:
        return "token (CLAIMX_API_TOKEN)"
    if settings.claimx_api_username:
        return f"user {settings.claimx_api_username!r}"
    return "no credentials"
