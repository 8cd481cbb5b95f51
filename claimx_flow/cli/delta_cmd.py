"""``claimx delta optimize|vacuum|history|stats|restore``: Delta table upkeep.

``vacuum`` and ``restore`` change what a table holds for good, so each shows its plan (the
files that would go; the version that becomes current) and asks before doing it; ``--yes``
skips the question for scripts, and without a terminal to ask on they refuse unless given it.
Every command takes ``--output json`` for scripts.

Exit codes, as for ``claimx dlq``:

- 0: done (a ``--dry-run`` found something to do);
- 1: nothing to do or declined — no file to vacuum, the version asked for is already current,
  the confirmation answered no; for ``stats``, a key held by two rows or no table there at all;
- 2: error — bad arguments, an unknown table or none there yet, the retention check refused, a
  Delta error, or ``vacuum``/``restore`` without a terminal and without ``--yes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import typer
from deltalake.exceptions import DeltaError
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from claimx_flow.config import Settings, load_settings
from claimx_flow.delta import maintenance as upkeep
from claimx_flow.delta.stats import TableStats, table_stats
from claimx_flow.delta.tables import TABLES
from claimx_flow.errors import ClaimxError
from claimx_flow.terminal import EXIT_ERROR, Output, confirm_plan, emit_json, print_error

EXIT_OK, EXIT_NOTHING = 0, 1

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 nothing to do or declined; 2 error (bad arguments, unknown or "
    "missing table, retention check, Delta error, vacuum/restore without a terminal and "
    "without --yes). stats: 1 when a key is held twice or no table is there."
)
LISTED_FILES = 20
STATS_EXIT_CODES = (
    "Exit codes: 0 shown; 1 a key held by more than one row (--keys), or no table there at "
    "all; 2 error (bad arguments, unknown table, Delta error)."
)


app = typer.Typer(
    help="Maintain the Delta tables (local or OneLake).\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
TABLE = typer.Option(..., "--table", "-t", help="Table name, e.g. claimx_projects.")
OUTPUT = typer.Option(Output.TABLE, "--output", "-o", case_sensitive=False, help="table or json.")
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (scripts).")


@contextmanager
def _failures_exit() -> Iterator[Settings]:
    """Settings for the command; a known failure becomes one red line and exit code 2."""
    try:
        yield load_settings(require_kafka=False)  # Delta maintenance never talks to Kafka
    except (ClaimxError, DeltaError, OSError) as exc:
        print_error(str(exc))  # delta-rs: many lines, coloured
        raise typer.Exit(EXIT_ERROR) from None


def _stderr() -> Console:
    return Console(stderr=True)


@app.command(epilog=EXIT_CODES_HELP)
def optimize(
    table: str = TABLE,
    zorder_by: str | None = typer.Option(
        None,
        "--zorder-by",
        metavar="COL[,COL]",
        help="Z-order on these columns (e.g. project_id,media_id) instead of only compacting: "
        "files then hold narrow ranges of them, so lookups by them read few files. Rewrites "
        "the whole table.",
    ),
    target_size: int | None = typer.Option(
        None,
        "--target-size",
        min=1,
        max=upkeep.TARGET_SIZE_MAX,
        help="Bytes per file written (default: 100 MiB).",
    ),
    output: Output = OUTPUT,
) -> None:
    """Compact small files, or Z-order them on columns."""
    columns = [c.strip() for c in zorder_by.split(",")] if zorder_by is not None else []
    doing = f"z-ordering {table} by {', '.join(columns)}" if columns else f"compacting {table}"
    with _failures_exit() as settings, _stderr().status(f"{doing}…"):
        metrics = upkeep.optimize(settings, table, columns, target_size=target_size)
    if output is Output.JSON:
        emit_json({"table": table, "zorder_by": columns, "metrics": metrics})
        return
    how = f"z-ordered by {', '.join(columns)}: " if columns else ""
    Console().print(
        f"{table}: {how}{metrics.get('numFilesRemoved', 0)} files rewritten into "
        f"{metrics.get('numFilesAdded', 0)}"
    )


@app.command(epilog=EXIT_CODES_HELP)
def vacuum(
    table: str = TABLE,
    retention_hours: int | None = typer.Option(
        None,
        min=0,
        max=upkeep.RETENTION_HOURS_MAX,
        help="Keep files newer than this (default: the table's retention).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would go."),
    force: bool = typer.Option(False, "--force", help="Allow a retention below the minimum."),
    yes: bool = YES,
    output: Output = OUTPUT,
) -> None:
    """Delete files no longer referenced and older than the retention. Cannot be undone:
    time travel to the versions that used them stops working."""
    with _failures_exit() as settings:
        with _stderr().status(f"listing what a vacuum of {table} removes…"):
            plan = upkeep.plan_vacuum(settings, table, retention_hours=retention_hours, force=force)
        if dry_run or not plan.files:
            _show(output, _vacuum_document(plan, dry_run=True, removed=[]), _vacuum_view(plan))
            raise typer.Exit(EXIT_OK if plan.files and dry_run else EXIT_NOTHING)
        confirm_plan(
            _vacuum_view(plan),
            f"Permanently delete {len(plan.files):,} file(s) from {table}?",
            what="vacuum",
            yes=yes,
            show=output is Output.TABLE,
        )
        with _stderr().status(f"vacuuming {table} ({len(plan.files):,} files)…"):
            removed = upkeep.execute_vacuum(settings, plan)
    if output is Output.JSON:
        emit_json(_vacuum_document(plan, dry_run=False, removed=removed))
        return
    console = Console()
    console.print(f"{table}: deleted {len(removed):,} file(s)")
    later = len(set(removed) - set(plan.files))
    if later:
        console.print(f"  ({later} passed the retention while you confirmed)")


def _vacuum_view(plan: upkeep.VacuumPlan) -> Group:
    retention = (
        f"{plan.retention_hours} hours{' (forced)' if plan.forced else ''}"
        if plan.retention_hours is not None
        else plan.table_retention
    )
    size = f", {plan.bytes:,} bytes" if plan.bytes is not None else ""
    header = Text(
        f"vacuum {plan.table} at version {plan.version}: {len(plan.files):,} file(s) "
        f"unreferenced and older than {retention}{size}"
    )
    view = Table(show_header=False)
    view.add_column("file", overflow="fold")
    for name in plan.files[:LISTED_FILES]:
        view.add_row(name)
    if len(plan.files) > LISTED_FILES:
        view.add_row(f"… and {len(plan.files) - LISTED_FILES:,} more (--output json lists all)")
    if not plan.files:
        view.add_row("nothing to remove")
    return Group(header, view)


def _vacuum_document(
    plan: upkeep.VacuumPlan, *, dry_run: bool, removed: list[str]
) -> dict[str, Any]:
    return {
        "table": plan.table,
        "version": plan.version,
        "dry_run": dry_run,
        "retention_hours": plan.retention_hours,
        "table_retention": plan.table_retention,
        "forced": plan.forced,
        "files": plan.files,
        "bytes": plan.bytes,
        "removed": removed,
    }


@app.command(epilog=EXIT_CODES_HELP)
def history(
    table: str = TABLE,
    limit: int = typer.Option(
        20, min=1, max=upkeep.HISTORY_LIMIT_MAX, help="How many commits, newest first."
    ),
    output: Output = OUTPUT,
) -> None:
    """Show the table's commits, newest first."""
    with _failures_exit() as settings:
        rows = upkeep.history(settings, table, limit)
    if output is Output.JSON:
        emit_json({"table": table, "commits": [_commit_document(c) for c in rows]})
        return
    view = Table(title=f"{table} history")
    for column in ("version", "timestamp", "operation", "parameters"):
        view.add_column(column, overflow="fold")
    for commit in rows:
        parameters = dict(commit.get("operationParameters") or {})
        if upkeep.ZORDER_BY in commit:
            parameters[upkeep.ZORDER_BY] = commit[upkeep.ZORDER_BY]
        view.add_row(
            str(commit.get("version", "-")),
            _when(commit.get("timestamp")) or "-",
            str(commit.get("operation", "-")),
            str(parameters)[:80],
        )
    Console().print(view)


def _commit_document(commit: dict[str, Any]) -> dict[str, Any]:
    return {**commit, "timestamp_iso": _when(commit.get("timestamp"))}


def _when(stamp: object) -> str | None:
    if not isinstance(stamp, int):
        return None
    return datetime.fromtimestamp(stamp / 1000, tz=UTC).isoformat(timespec="milliseconds")


@app.command(epilog=STATS_EXIT_CODES)
def stats(
    tables: list[str] = typer.Option(
        [], "--table", "-t", help="Only these tables (default: every pipeline table)."
    ),
    keys: bool = typer.Option(
        False,
        "--keys",
        help="Also read each table's key columns and count keys held by more than one row "
        "(reads those columns whole).",
    ),
    output: Output = OUTPUT,
) -> None:
    """Each table's version, last commit, files, size and rows (from the files' statistics,
    reading no data): the runbook's weekly row-count check. A table not written yet is shown
    as such."""
    with _failures_exit() as settings:
        found = [table_stats(settings, name, check_keys=keys) for name in (tables or list(TABLES))]
    twice = [s.name for s in found if s.key_check and s.key_check.duplicated]
    none = not any(s.exists for s in found)
    if output is Output.JSON:
        emit_json({"tables": [_stats_document(s) for s in found], "duplicated_keys_in": twice})
    else:
        Console().print(_stats_view(found, keys))
    if twice:
        print_error(f"keys held by more than one row in {', '.join(twice)}")
    if none:  # a wrong CLAIMX_DATA_DIR or lakehouse reads as a pipeline that wrote nothing
        print_error(f"no table there yet: looked in {found[0].location.rsplit('/', 1)[0]}")
    if twice or none:
        raise typer.Exit(EXIT_NOTHING)


def _stats_document(found: TableStats) -> dict[str, Any]:
    document = asdict(found)
    document["committed_at"] = _when(found.committed_at_ms)
    return document


def _stats_view(found: list[TableStats], keys: bool) -> Table:
    view = Table(title="Delta tables")
    columns = ["table", "version", "last commit", "files", "size", "rows"]
    for column in [*columns, *(["distinct keys", "held twice"] if keys else [])]:
        view.add_column(column, justify="left" if column in ("table", "last commit") else "right")
    for each in found:
        if not each.exists:
            missing = Text(f"not written yet ({each.location})", style="yellow")
            view.add_row(each.name, missing, *["-"] * (len(columns) - 2))
            continue
        cells = [
            each.name,
            str(each.version),
            _when(each.committed_at_ms) or "-",
            f"{each.files:,}",
            f"{each.bytes / 2**20:,.1f} MiB",
            f"- ({each.rows_unknown})" if each.rows is None else f"{each.rows:,}",
        ]
        if each.key_check is not None:
            check = each.key_check
            held = f"[red]{check.duplicated:,}[/]" if check.duplicated else "0"
            cells += [f"{check.distinct:,}", held]
        view.add_row(*cells)
    return view


@app.command(epilog=EXIT_CODES_HELP)
def restore(
    table: str = TABLE,
    version: int | None = typer.Option(None, min=0, help="Version to restore."),
    timestamp: datetime | None = typer.Option(
        None, help="Time to restore: the last version committed at or before it (UTC)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show which version it would be."),
    yes: bool = YES,
    output: Output = OUTPUT,
) -> None:
    """Restore the table to a version or a time, as a new commit. Stop its writers first."""
    if (version is None) == (timestamp is None):
        raise typer.BadParameter("give exactly one of --version or --timestamp")
    target: int | datetime
    if version is not None:
        target = version
    else:
        assert timestamp is not None
        target = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    with _failures_exit() as settings:
        plan = upkeep.plan_restore(settings, table, target)
        if dry_run or not plan.changes_anything:
            _show(output, _restore_document(plan, dry_run=True, metrics=None), _restore_view(plan))
            raise typer.Exit(EXIT_OK if plan.changes_anything else EXIT_NOTHING)
        confirm_plan(
            _restore_view(plan),
            f"Make version {plan.target.version} of {table} current "
            f"(as version {plan.new_version})?",
            what="restore",
            yes=yes,
            show=output is Output.TABLE,
        )
        with _stderr().status(f"restoring {table} to version {plan.target.version}…"):
            metrics = upkeep.execute_restore(settings, plan)
    if output is Output.JSON:
        emit_json(_restore_document(plan, dry_run=False, metrics=metrics))
        return
    Console().print(
        f"{table}: version {plan.target.version} restored as version {plan.new_version} "
        f"({metrics.get('numRestoredFile', 0)} files restored, "
        f"{metrics.get('numRemovedFile', 0)} removed from the current state)"
    )
    if replay := _replay_hint(plan):
        Console().print(replay)


def _restore_view(plan: upkeep.RestorePlan) -> Group:
    header = (
        f"restore {plan.table}: version {plan.target.version} becomes current "
        f"as version {plan.new_version}"
        if plan.changes_anything
        else f"restore {plan.table}: version {plan.target.version} is already current"
    )
    view = Table()
    for column in ("", "version", "committed", "operation", "files"):
        view.add_column(column)
    for label, commit, files in (
        ("now", plan.current, plan.current_files),
        ("after", plan.target, plan.target_files),
    ):
        when = commit.timestamp.isoformat(timespec="seconds") if commit.timestamp else "?"
        view.add_row(label, str(commit.version), when, commit.operation, f"{files:,}")
    notes = [Text(note) for note in (_vacuum_warning(plan), _replay_hint(plan)) if note]
    return Group(Text(header), view, *notes)


def _vacuum_warning(plan: upkeep.RestorePlan) -> str | None:
    """A vacuum after the target may have deleted files it needs: delta-rs then refuses the
    restore whole, so the operator is told before confirming, not after."""
    if plan.vacuumed is None or not plan.changes_anything:
        return None
    when = plan.vacuumed.timestamp.isoformat(timespec="seconds") if plan.vacuumed.timestamp else "?"
    return (
        f"Warning: the table was vacuumed at version {plan.vacuumed.version} ({when}), after "
        f"version {plan.target.version}: files it needs may be gone. The restore then fails "
        "and changes nothing."
    )


def _replay_hint(plan: upkeep.RestorePlan) -> str | None:
    """What the operator must do after the restore: the rows it drops were written for inputs
    their stages have read, and nothing reads those again unless told to."""
    if plan.dropped is None or not plan.changes_anything:
        return None
    since = plan.dropped.timestamp.isoformat(timespec="seconds") if plan.dropped.timestamp else "?"
    commands = "; ".join(
        f"claimx recovery reset {stage} --to-datetime {since}" for stage in plan.writers
    )
    return (
        f"Rows committed since {since} (version {plan.dropped.version} on) leave the table. "
        f"With the writers stopped, read their inputs again from then: {commands} "
        "(rows are merged by key: nothing doubles)."
    )


def _restore_document(
    plan: upkeep.RestorePlan, *, dry_run: bool, metrics: dict[str, Any] | None
) -> dict[str, Any]:
    def commit(c: upkeep.Commit, files: int) -> dict[str, Any]:
        when = c.timestamp.isoformat() if c.timestamp else None
        return {"version": c.version, "timestamp": when, "operation": c.operation, "files": files}

    return {
        "table": plan.table,
        "dry_run": dry_run,
        "current": commit(plan.current, plan.current_files),
        "target": commit(plan.target, plan.target_files),
        "new_version": plan.new_version if plan.changes_anything else None,
        "dropped_since": (
            plan.dropped.timestamp.isoformat()
            if plan.dropped and plan.dropped.timestamp and plan.changes_anything
            else None
        ),
        "replay": _replay_hint(plan),
        "vacuumed_after": plan.vacuumed.version if plan.vacuumed else None,
        "metrics": metrics,
    }


def _show(output: Output, document: dict[str, Any], view: Group) -> None:
    if output is Output.JSON:
        emit_json(document)
    else:
        Console().print(view)
