"""``claimx stack up|status|down``: the local servers a developer and the tests run on."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.lab.stack import Stack, default_services
from claimx_flow.lab.stack.manager import ServiceStatus
from claimx_flow.terminal import OUTPUT_OPTION, Output, confirm_plan, emit_json

app = typer.Typer(
    help="Start, inspect and stop the local stack (Kafka and the API simulator on 127.0.0.1)."
)


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


@app.command()
def up() -> None:
    """Start the local services that are not running yet and print how to reach them."""
    stack = Stack()
    with console().status("starting the local stack…"):
        state = stack.up(default_services())
    for running in state.values():
        console().print(f"[green]✓[/] {running.name} ready at [bold]{running.endpoint}[/]")
    if "kafka" not in state:
        console().print("using the external Kafka cluster from KAFKA_BOOTSTRAP_SERVERS")
    if "simulator" not in state:
        console().print("using the ClaimX API at CLAIMX_API_URL")
    console().print(f"environment: [bold]source {stack.env_path}[/]")


@app.command()
def status(output: Output = OUTPUT_OPTION) -> None:
    """Show each service of the stack: process, endpoint, readiness. Exit code 1 when it is not
    running or a service is not ready."""
    statuses = Stack().status()
    if output is Output.JSON:
        emit_json({"services": [_document(s) for s in statuses]})
    elif not statuses:
        console().print("the local stack is not running ([bold]claimx stack up[/] starts it)")
    else:
        table = Table(title="local stack")
        for column in ("service", "pid", "endpoint", "state", "note"):
            table.add_column(column)
        for s in statuses:
            colour = {"ready": "green", "starting": "yellow", "down": "red"}[_state(s)]
            table.add_row(
                s.name, str(s.pid or "-"), s.endpoint, f"[{colour}]{_state(s)}[/]", s.note
            )
        console().print(table)
    if not statuses or not all(s.ready for s in statuses):
        raise typer.Exit(1)


def _state(service: ServiceStatus) -> str:
    return "ready" if service.ready else ("starting" if service.alive else "down")


def _document(service: ServiceStatus) -> dict[str, object]:
    return {
        "service": service.name,
        "pid": service.pid,
        "endpoint": service.endpoint,
        "state": _state(service),
        "note": service.note,
    }


@app.command()
def down(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Stop every service the stack started and delete its data (the broker's topics, the
    storage emulator's files). Shows what goes and asks first, unless --yes."""
    stack = Stack()
    running = stack.running()
    if not running:
        stack.down()  # the state a failed `stack up` left, which would make commands local
        console().print("nothing was running")
        return
    plan = Table(title="stop and delete")
    for column in ("service", "pid", "data deleted"):
        plan.add_column(column)
    for service in running.values():
        plan.add_row(service.name, str(service.pid), service.workdir)
    confirm_plan(plan, "Stop these services and delete their data?", what="stop the stack", yes=yes)
    console().print(f"stopped: {', '.join(stack.down())}")
