"""``claimx config show|example``: the effective settings (secrets masked), and every variable
with its default and meaning (the ``.env.example`` at the repository's root)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from claimx_flow.config import env_example, env_name, load_settings
from claimx_flow.models.redaction import mask_url_queries
from claimx_flow.terminal import OUTPUT_OPTION, Output, emit_json

app = typer.Typer(help="Show and validate the effective configuration.")


def console() -> Console:
    """A console per use: one sizes itself when made, from ``COLUMNS`` at that moment."""
    return Console()


@app.command()
def show(output: Output = OUTPUT_OPTION) -> None:
    """Print every setting by its environment variable; secrets, and URL queries, show as
    stars."""
    settings = load_settings(require_kafka=False)  # shows the settings; talks to no broker
    values = {
        env_name(field): mask_url_queries(value) if isinstance(value, str) else value
        for field, value in settings
    }  # a query may hold a grant (a SAS token on a storage endpoint): shown as ``?***``
    if output is Output.JSON:
        emit_json(
            {
                "variables": {
                    name: value
                    if value is None or isinstance(value, bool | int | float | list)
                    else str(value)
                    for name, value in values.items()
                }
            }
        )
        return
    table = Table(title="effective configuration")
    table.add_column("variable")
    table.add_column("value")
    for name, value in values.items():
        table.add_row(name, Text("-" if value is None else str(value)))  # data, not markup
    console().print(table)


@app.command()
def example() -> None:
    """Print every variable, commented out at its default, with its meaning (.env.example)."""
    typer.echo(env_example(), nl=False)
