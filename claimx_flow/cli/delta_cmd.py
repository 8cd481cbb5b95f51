"""``claimx delta optimize|vacuum|history|restore``: Delta table upkeep."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from claimx_flow.config import load_settings
from claimx_flow.delta import maintenance as upkeep

app = typer.Typer(help="Maintain the Delta tables (local or OneLake).")
console = Console()
TABLE = typer.Option(..., "--table", "-t", help="Table name, e.g. claimx_projects.")


@app.command()
def optimize(table: str = TABLE) -> None:
    """Compact small files."""
    metrics = upkeep.optimize(load_settings(), table)
    console.print(
        f"{table}: {metrics.get('numFilesRemoved', 0)} files compacted into "
        f"{metrics.get('numFilesAdded', 0)}"
    )


@app.command()
def vacuum(
    table: str = TABLE,
    retention_hours: int | None = typer.Option(None, help="Keep files newer than this."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go."),
    force: bool = typer.Option(False, "--force", help="Allow a retention below the minimum."),
) -> None:
    """Delete files no longer referenced and older than the retention."""
    files = upkeep.vacuum(
        load_settings(), table, retention_hours=retention_hours, dry_run=dry_run, force=force
    )
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{table}: {verb} {len(files)} files")
    for name in files[:20]:
        console.print(f"  {name}")


@app.command()
def history(table: str = TABLE, limit: int = typer.Option(20, min=1)) -> None:
    """Show the table's commits, newest first."""
    rows = upkeep.history(load_settings(), table, limit)
    view = Table(title=f"{table} history")
    for column in ("version", "timestamp", "operation", "parameters"):
        view.add_column(column, overflow="fold")
    for commit in rows:
        stamp = commit.get("timestamp")
        when = datetime.fromtimestamp(stamp / 1000, tz=UTC).isoformat() if stamp else "-"
        view.add_row(
            str(commit.get("version", "-")),
            when,
            str(commit.get("operation", "-")),
            str(commit.get("operationParameters", ""))[:80],
        )
    console.print(view)


@app.command()
def restore(
    table: str = TABLE,
    version: int | None = typer.Option(None, help="Version to restore."),
    timestamp: datetime | None = typer.Option(None, help="Time to restore (UTC)."),
) -> None:
    """Restore the table to a version or a time (as a new commit)."""
    if (version is None) == (timestamp is None):
        raise typer.BadParameter("give exactly one of --version or --timestamp")
    target: int | datetime
    if version is not None:
        target = version
    else:
        assert timestamp is not None
        target = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    metrics = upkeep.restore(load_settings(), table, target)
    console.print(f"{table}: restored ({metrics})")
