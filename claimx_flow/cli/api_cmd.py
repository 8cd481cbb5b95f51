"""``claimx api check``: can the pipeline reach ClaimX with its credentials?"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from claimx_flow.api import ApiPolicy, CheckResult, ClaimXApiClient
from claimx_flow.config import Settings, load_settings

app = typer.Typer(help="Talk to the ClaimX API.")
console = Console(soft_wrap=True)

_HEADLINES = {
    "unreachable": "cannot reach the ClaimX API",
    "unavailable": "the ClaimX API is unavailable for now",
    "credentials": "the ClaimX API rejected the credentials",
    "unexpected": "unexpected response from the ClaimX API",
}


@app.callback()
def _api() -> None:
    """Talk to the ClaimX API."""


@app.command()
def check(
    project_id: str = typer.Option("1", help="Project to fetch as the probe."),
) -> None:
    """Test the connection and credentials with one request; exit 1 if something is wrong."""
    settings = load_settings(require_api=True)
    result = asyncio.run(_check(settings, ApiPolicy(check_project_id=project_id)))
    who = _who(settings)
    if result.ok:
        console.print(
            f"[green]✓[/] {settings.claimx_api_url} reachable as {who}: {result.detail} "
            f"({result.elapsed_ms:.0f} ms)",
            highlight=False,
        )
        return
    headline = _HEADLINES[result.problem or "unexpected"]
    console.print(f"[bold red]✗ {headline}[/] at {settings.claimx_api_url} as {who}")
    console.print(f"  {result.detail}", highlight=False, markup=False)
    raise typer.Exit(1)


async def _check(settings: Settings, policy: ApiPolicy) -> CheckResult:
    async with ClaimXApiClient(settings, policy) as client:
        return await client.check()


def _who(settings: Settings) -> str:
    if settings.claimx_api_token is not None:
        return "token (CLAIMX_API_TOKEN)"
    if settings.claimx_api_username:
        return f"user {settings.claimx_api_username!r}"
    return "no credentials"
