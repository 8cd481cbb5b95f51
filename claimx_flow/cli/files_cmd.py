"""``claimx files sweep``: delete the staging files uploads killed mid-way left behind.

An upload writes a hidden staging file beside its target and renames it on; one killed before
it could clean up (SIGKILL, a lost node, an out-of-memory kill) leaves it, and nothing reads or
removes it after (``storage/leftovers.py``). The sweep lists them, shows its plan and asks, as
``delta vacuum`` does; ``--dry-run`` only lists. It never takes a staging file younger than the
upload deadline plus an hour, so it cannot race an upload in flight.

Exit codes, as for ``claimx delta``: 0 done (a ``--dry-run`` found some); 1 nothing to sweep
or declined; 2 error (bad arguments or settings, storage unreachable or refusing, some files
not deleted, or no terminal and no ``--yes``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from claimx_flow.cli.spans import SPAN_EXAMPLES, parse_span, span_text
from claimx_flow.config import Settings, load_settings
from claimx_flow.errors import ClaimxError, ErrorCategory
from claimx_flow.models import utc_now
from claimx_flow.storage.base import FileStore
from claimx_flow.storage.leftovers import Leftover, least_age
from claimx_flow.storage.locations import file_store
from claimx_flow.storage.paths import MEDIA_ROOT
from claimx_flow.terminal import (
    EXIT_ERROR,
    OUTPUT_OPTION,
    Output,
    confirm_plan,
    emit_json,
    print_error,
)

EXIT_OK, EXIT_NOTHING = 0, 1
LISTED_FILES = 20
FAILURES_IN_A_ROW = 3
"""Deletes failing one after another that stop the sweep: the store is down, not one file."""
EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 nothing to sweep or declined; 2 error (bad arguments or settings, "
    "storage unreachable, files not deleted, no terminal and no --yes)."
)

app = typer.Typer(
    help="Look after the uploaded media files: sweep the staging files of killed uploads.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def files() -> None:
    """Look after the uploaded media files: sweep the staging files of killed uploads."""


@contextmanager
def _failures_exit() -> Iterator[Settings]:
    """Settings for the command; a known failure becomes one red line and exit code 2."""
    try:
        yield load_settings(require_kafka=False)  # the files alone: Kafka is not needed
    except (ClaimxError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_ERROR) from None


@app.command(epilog=EXIT_CODES_HELP)
def sweep(
    older_than: str = typer.Option(
        "24h",
        "--older-than",
        help=f"Only staging files last written longer ago than this ({SPAN_EXAMPLES}); at "
        "least the upload deadline (UPLOAD_TIMEOUT_SECONDS) plus an hour.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would go."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (scripts)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Delete the staging files of uploads that were killed before they finished. Only hidden
    staging files are touched, never a stored media file."""
    age = parse_span(older_than, "--older-than")
    with _failures_exit() as settings:
        least = least_age(settings.upload_timeout_seconds)
        if age < least:
            raise typer.BadParameter(
                f"{older_than} is younger than an upload may run: at least "
                f"{span_text(int(least.total_seconds()))} (UPLOAD_TIMEOUT_SECONDS plus an hour)",
                param_hint="--older-than",
            )
        try:
            before = utc_now() - age
        except OverflowError:
            raise typer.BadParameter(
                f"{older_than} reaches before year 1", param_hint="--older-than"
            ) from None
        plan = asyncio.run(_plan(settings, before))
        view = _plan_view(plan, age)
        if dry_run or not plan.leftovers:
            _show(output, _document(plan, age, dry_run=True), view)
            raise typer.Exit(EXIT_OK if plan.leftovers and dry_run else EXIT_NOTHING)
        confirm_plan(
            view,
            f"Permanently delete {len(plan.leftovers):,} staging file(s)?",
            what="sweep",
            yes=yes,
            show=output is Output.TABLE,
        )
        asyncio.run(_delete(settings, plan))
    if output is Output.JSON:
        emit_json(_document(plan, age, dry_run=False))
    else:
        console = Console()
        console.print(
            f"deleted {len(plan.removed):,} staging file(s), {plan.removed_bytes:,} bytes"
        )
        if plan.gone:
            console.print(f"  ({len(plan.gone)} were already gone)")
    if plan.failed:
        left = len(plan.leftovers) - len(plan.removed) - len(plan.gone)
        path, error = plan.failed[-1]
        stopped = " (stopped: the store refuses or is down)" if plan.stopped else ""
        print_error(f"{left} staging file(s) not deleted{stopped}; {path}: {error}")
        raise typer.Exit(EXIT_ERROR)


class _Plan:
    """What a sweep found and, once run, what became of each file."""

    def __init__(self, where: str, leftovers: list[Leftover], scanned: int) -> None:
        self.where = where
        self.leftovers = sorted(leftovers, key=lambda item: item.path)
        self.scanned = scanned
        self.removed: list[Leftover] = []
        self.gone: list[Leftover] = []
        self.failed: list[tuple[str, str]] = []
        self.stopped = False
        """Deleting stopped before the end: the store refused, or failed too often in a row."""

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.leftovers)

    @property
    def removed_bytes(self) -> int:
        return sum(item.bytes for item in self.removed)


async def _plan(settings: Settings, before: datetime) -> _Plan:
    store = file_store(settings)
    where = store.uri_of(MEDIA_ROOT)
    counted = [0]
    try:
        with Console(stderr=True).status(f"listing {where}…") as status:

            def scanned(count: int) -> None:
                status.update(f"listing {where}: {count:,} files looked at…")
                counted[0] = count

            found = await store.leftovers(before, scanned)
    finally:
        await store.close()
    return _Plan(where, found, counted[0])


async def _delete(settings: Settings, plan: _Plan) -> None:
    store = file_store(settings)
    columns = (TextColumn("deleting"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("sweep", total=len(plan.leftovers))
            in_a_row = 0
            for leftover in plan.leftovers:
                failed = await _delete_one(store, leftover, plan)
                in_a_row = in_a_row + 1 if failed else 0
                if failed is ErrorCategory.AUTH or in_a_row >= FAILURES_IN_A_ROW:
                    plan.stopped = True  # each next file would wait out the same refusal
                    break
                progress.advance(task)
    finally:
        await store.close()


async def _delete_one(store: FileStore, leftover: Leftover, plan: _Plan) -> ErrorCategory | None:
    """One file, recorded as removed, gone or failed; a failure's category, or None."""
    try:
        deleted = await store.discard(leftover)
    except ClaimxError as exc:  # a OneLakeError names its category; the Azure SDK loads lazily
        plan.failed.append((leftover.path, str(exc)))
        category = getattr(exc, "category", None)
        return category if isinstance(category, ErrorCategory) else ErrorCategory.PERMANENT
    except OSError as exc:
        plan.failed.append((leftover.path, str(exc)))
        return ErrorCategory.TRANSIENT
    (plan.removed if deleted else plan.gone).append(leftover)
    return None


def _plan_view(plan: _Plan, age: timedelta) -> Group:
    header = Text(
        f"{plan.where}: {len(plan.leftovers):,} staging file(s) last written over "
        f"{span_text(int(age.total_seconds()))} ago, {plan.bytes:,} bytes "
        f"({plan.scanned:,} files looked at)"
    )
    view = Table()
    view.add_column("staging file", overflow="fold")
    view.add_column("bytes", justify="right", no_wrap=True)
    view.add_column("last written (UTC)", no_wrap=True)
    for item in plan.leftovers[:LISTED_FILES]:
        written = item.modified.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        view.add_row(item.path, f"{item.bytes:,}", written)
    if len(plan.leftovers) > LISTED_FILES:
        rest = len(plan.leftovers) - LISTED_FILES
        view.add_row(f"… and {rest:,} more (--output json lists all)", "", "")
    if not plan.leftovers:
        return Group(header, Text("nothing to sweep"))
    return Group(header, view)


def _document(plan: _Plan, age: timedelta, *, dry_run: bool) -> dict[str, Any]:
    def listed(items: list[Leftover]) -> list[dict[str, Any]]:
        return [
            {
                "path": item.path,
                "bytes": item.bytes,
                "modified": item.modified.isoformat(),
                "target": item.target,
            }
            for item in items
        ]

    return {
        "where": plan.where,
        "older_than_s": age.total_seconds(),
        "dry_run": dry_run,
        "scanned": plan.scanned,
        "leftovers": listed(plan.leftovers),
        "bytes": plan.bytes,
        "removed": listed(plan.removed),
        "gone": listed(plan.gone),
        "failed": [{"path": path, "error": error} for path, error in plan.failed],
    }


def _show(output: Output, document: dict[str, Any], view: Group) -> None:
    if output is Output.JSON:
        emit_json(document)
    else:
        Console().print(view)
