"""``claimx check``: the runbook's dry run — configuration, Kafka, API, storage, recovery."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from claimx_flow import catalog
from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import load_settings
from claimx_flow.errors import ClaimxError
from claimx_flow.startup.preflight import run_checks
from claimx_flow.storage.locations import onelake_address
from claimx_flow.terminal import OUTPUT_OPTION, Output, emit_json


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


def check(
    stage: list[str] = typer.Option(
        [], "--stage", "-s", help=f"Check only these stages ({', '.join(STAGE_NAMES)})."
    ),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Check that the pipeline can run here; exit 1 if anything fails, 2 on bad settings
    or an unreachable Kafka, API or OneLake."""
    unknown = [s for s in stage if s not in STAGE_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s): {', '.join(unknown)}", param_hint="--stage")
    stages = tuple(stage) or STAGE_NAMES
    calls_api = any(catalog.stage(name).calls_api for name in stages)
    settings = load_settings(require_api=calls_api)  # a bad or missing value ends here, named
    onelake_address(settings)  # so does half a lakehouse, or a bad endpoint: exit 2, not a FAIL
    with Console(stderr=True).status("checking Kafka, the topics, the API and the storage…"):
        checks = run_checks(settings, stages)  # up to their timeouts each, against broken peers
    if output is Output.JSON:
        emit_json(
            {
                "stages": list(stages),
                "ok": all(item.ok for item in checks),
                "checks": [
                    {
                        "name": "configuration",
                        "ok": True,
                        "blocking": True,
                        "unreachable": False,
                        "detail": "settings valid",
                    },
                    *(
                        {
                            "name": item.name,
                            "ok": item.ok,
                            "blocking": item.blocking,
                            "unreachable": item.unreachable,
                            "detail": item.detail,
                        }
                        for item in checks
                    ),
                ],
            }
        )
    else:
        table = Table(title="claimx check")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        table.add_row("configuration", "[green]pass[/]", "settings valid")
        for item in checks:
            verdict = (
                "[green]pass[/]"
                if item.ok
                else ("[red]FAIL[/]" if item.blocking else "[yellow]FAIL[/]")
            )
            table.add_row(item.name, verdict, Text(item.detail))  # a path or a peer's words
        console().print(table)
    down = [item for item in checks if item.unreachable]
    if down:
        raise ClaimxError(f"{down[0].name}: {down[0].detail}")
    if not all(item.ok for item in checks):
        raise typer.Exit(1)
