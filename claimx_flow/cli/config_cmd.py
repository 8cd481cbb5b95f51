"""``claimx config show``: the effective settings, with secrets masked."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.config import env_name, load_settings

app = typer.Typer(help="Show and validate the effective configuration.")
console = Console()


@app.command()
def show() -> None:
    """Print every setting by its environment variable; secrets show as stars."""
    settings = load_settings()
    table = Table(title="effective configuration")
    table.add_column("variable")
    table.add_column("value")
    for field, value in settings:
        table.add_row(env_name(field), "-" if value is None else str(value))
    console.print(table)
