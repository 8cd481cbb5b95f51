"""``claimx stack up|status|down``: the local servers a developer and the tests run on."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.lab.stack import Stack, default_services

app = typer.Typer(
    help="Start, inspect and stop the local stack (Kafka and the API simulator on 127.0.0.1)."
)
console = Console()


@app.command()
def up() -> None:
    """Start the local services that are not running yet and print how to reach them."""
    stack = Stack()
    with console.status("starting the local stack…"):
        state = stack.up(default_services())
    for running in state.values():
        console.print(f"[green]✓[/] {running.name} ready at [bold]{running.endpoint}[/]")
    if "kafka" not in state:
        console.print("using the external Kafka cluster from KAFKA_BOOTSTRAP_SERVERS")
    if "simulator" not in state:
        console.print("using the ClaimX API at CLAIMX_API_URL")
    console.print(f"environment: [bold]source {stack.env_path}[/]")


@app.command()
def status() -> None:
    """Show each service of the stack: process, endpoint, readiness."""
    statuses = Stack().status()
    if not statuses:
        console.print("the local stack is not running ([bold]claimx stack up[/] starts it)")
        raise typer.Exit(1)
    table = Table(title="local stack")
    for column in ("service", "pid", "endpoint", "state", "note"):
        table.add_column(column)
    for s in statuses:
        state = (
            "[green]ready[/]" if s.ready else ("[yellow]starting[/]" if s.alive else "[red]down[/]")
        )
        table.add_row(s.name, str(s.pid or "-"), s.endpoint, state, s.note)
    console.print(table)
    if not all(s.ready for s in statuses):
        raise typer.Exit(1)


@app.command()
def down() -> None:
    """Stop every service the stack started and delete its data."""
    stopped = Stack().down()
    if stopped:
        console.print(f"stopped: {', '.join(stopped)}")
    else:
        console.print("nothing was running")
