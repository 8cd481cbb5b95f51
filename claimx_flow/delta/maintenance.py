"""Delta table upkeep from the runbook: compact or Z-order small files, vacuum old ones, read the
history, restore a version — on local or OneLake tables, through the same locations the stages
use.

Vacuum keeps delta-rs's retention safety (7 days unless the table says otherwise): files a
reader or a time-travel query may still need are not removed unless the operator forces it.
The destructive commands are split into a plan (what a vacuum would remove, which version a
restore makes current) and its execution, so the command line can show the plan and ask first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.errors import ClaimxError
from claimx_flow.models.redaction import one_line
from claimx_flow.storage.locations import table_location

ZORDER_BY = "zOrderBy"
"""The commit-info field of an OPTIMIZE that names its Z-order columns (a JSON list)."""
DEFAULT_RETENTION_HOURS = 168
"""delta-rs's retention when the table sets no ``delta.deletedFileRetentionDuration``."""
RETENTION_HOURS_MAX = 100 * 366 * 24
"""A century: beyond it delta-rs's duration overflows (a panic, not an error)."""
TARGET_SIZE_MAX = 2**40
"""1 TiB a file: far above any useful size, and below what delta-rs's integer holds."""
HISTORY_LIMIT_MAX = 1_000_000
"""More commits than a table keeps in its log, and an integer delta-rs takes."""


class MaintenanceError(ClaimxError):
    """A maintenance command that cannot run as asked."""


def open_table(settings: Settings, name: str, version: int | None = None) -> DeltaTable:
    if name not in TABLES:
        raise MaintenanceError(f"unknown table {name!r} (one of {', '.join(TABLES)})")
    uri, options = table_location(settings, name)
    try:
        return DeltaTable(uri, version=version, storage_options=options)
    except TableNotFoundError:
        raise MaintenanceError(f"{name}: no Delta table at {uri} yet") from None


def optimize(
    settings: Settings,
    name: str,
    zorder_by: Sequence[str] = (),
    *,
    target_size: int | None = None,
) -> dict[str, Any]:
    """Compact small files into larger ones, or with ``zorder_by`` rewrite them clustered on
    those columns (files then hold narrow ranges of them, so a lookup by one reads few files).
    ``target_size``: bytes per file written (delta-rs's default: 100 MiB).

    Idempotent for compaction; a Z-order rewrites every file of the table each time.
    """
    table = open_table(settings, name)
    if not zorder_by:
        return dict(table.optimize.compact(target_size=target_size))
    columns = zorder_columns(table, name, zorder_by)
    # delta-rs records no columns for a Z-order; the commit names them (history shows it).
    said = CommitProperties(custom_metadata={ZORDER_BY: json.dumps(columns)})
    return dict(table.optimize.z_order(columns, target_size=target_size, commit_properties=said))


def zorder_columns(table: DeltaTable, name: str, asked: Sequence[str]) -> list[str]:
    """``asked``, checked: columns of the table, none a partition column, none twice."""
    columns = [c.strip() for c in asked if c.strip()]
    if not columns:
        raise MaintenanceError("--zorder-by needs at least one column")
    present = [field.name for field in table.schema().fields]
    unknown = [c for c in columns if c not in present]
    if unknown:
        raise MaintenanceError(
            f"{name}: {', '.join(unknown)} not a column of the table "
            f"(columns: {', '.join(present)})"
        )
    partitioned = [c for c in columns if c in table.metadata().partition_columns]
    if partitioned:
        raise MaintenanceError(
            f"{name}: {', '.join(partitioned)} is a partition column; each file already holds "
            "one value of it"
        )
    if len(set(columns)) != len(columns):
        raise MaintenanceError(f"{name}: a column is named twice in --zorder-by")
    return columns


@dataclass(frozen=True)
class VacuumPlan:
    """What a vacuum would remove now: files no longer referenced and older than the retention."""

    table: str
    uri: str
    version: int
    retention_hours: int | None
    """As asked; None: the table's own retention."""
    table_retention: str
    files: list[str]
    bytes: int | None
    """Their total size when the table is local (None on OneLake)."""
    forced: bool


def plan_vacuum(
    settings: Settings, name: str, *, retention_hours: int | None = None, force: bool = False
) -> VacuumPlan:
    table = open_table(settings, name)
    files = _vacuum(table, name, retention_hours, dry_run=True, force=force)
    uri, _ = table_location(settings, name)
    files, size = _still_there(uri, files)
    return VacuumPlan(
        name,
        uri,
        table.version(),
        retention_hours,
        table_retention(table),
        files,
        size,
        force,
    )


def execute_vacuum(settings: Settings, plan: VacuumPlan) -> list[str]:
    """Vacuum by the plan's rule; returns the files removed.

    delta-rs takes a retention, not a file list: a file that passed the retention between the
    plan and this call (rare: a file is only unreferenced once a commit removed it) goes too.
    """
    table = open_table(settings, plan.table)
    return _vacuum(table, plan.table, plan.retention_hours, dry_run=False, force=plan.forced)


def vacuum(
    settings: Settings,
    name: str,
    *,
    retention_hours: int | None = None,
    dry_run: bool = True,
    force: bool = False,
) -> list[str]:
    """Files no longer referenced and older than the retention, deleted unless ``dry_run``.

    ``force`` allows a retention shorter than the table's minimum (delta-rs refuses otherwise).
    """
    return _vacuum(open_table(settings, name), name, retention_hours, dry_run=dry_run, force=force)


def _vacuum(
    table: DeltaTable, name: str, retention_hours: int | None, *, dry_run: bool, force: bool
) -> list[str]:
    try:
        return list(
            table.vacuum(
                retention_hours=retention_hours,
                dry_run=dry_run,
                enforce_retention_duration=not force,
            )
        )
    except Exception as exc:  # delta-rs raises its own errors for the retention check
        if "retention" in str(exc).lower():
            raise MaintenanceError(f"{name}: {exc} (add --force to override)") from None
        raise


def table_retention(table: DeltaTable) -> str:
    configured = table.metadata().configuration.get("delta.deletedFileRetentionDuration")
    return configured or f"{DEFAULT_RETENTION_HOURS} hours (delta-rs default)"


def _still_there(uri: str, files: list[str]) -> tuple[list[str], int | None]:
    """The files of a local table that are still on disk, and their total size.

    delta-rs's vacuum (its default "lite" mode) lists the removals the log records, including
    files an earlier vacuum already deleted; locally those are left out of the plan. On OneLake
    the list is delta-rs's and the size unknown.
    """
    if "://" in uri and not uri.startswith("file://"):
        return files, None
    root = Path(uri.removeprefix("file://"))
    there: list[str] = []
    total = 0
    for name in files:
        try:
            total += (root / name).stat().st_size
        except FileNotFoundError:
            continue
        there.append(name)
    return there, total


def history(settings: Settings, name: str, limit: int | None = 20) -> list[dict[str, Any]]:
    return list(open_table(settings, name).history(limit))


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp: datetime | None
    operation: str


@dataclass(frozen=True)
class RestorePlan:
    """Which version a restore makes current, as which new version."""

    table: str
    current: Commit
    target: Commit
    current_files: int
    target_files: int
    dropped: Commit | None = None
    """The first commit the restore undoes: rows written from then on leave the table, though
    their writers' inputs were read, so those inputs must be read again."""
    vacuumed: Commit | None = None
    """The last vacuum after the target version that deleted files: files the target needs may
    be among them, and a restore that misses one fails (and changes nothing)."""

    @property
    def new_version(self) -> int:
        return self.current.version + 1

    @property
    def writers(self) -> list[str]:
        """The stages that write this table: the ones whose input a restore must replay."""
        return [name for name, spec in catalog.STAGES.items() if self.table in spec.tables]

    @property
    def changes_anything(self) -> bool:
        return self.target.version != self.current.version


def plan_restore(settings: Settings, name: str, target: int | datetime) -> RestorePlan:
    """The version ``target`` names (for a time: the last commit at or before it)."""
    table = open_table(settings, name)
    entries = table.history()
    commits = {c.version: c for c in map(_commit, entries)}
    current = table.version()
    if isinstance(target, datetime):
        earlier = [c for c in commits.values() if c.timestamp is not None and c.timestamp <= target]
        if not earlier:
            raise MaintenanceError(f"{name}: no commit at or before {target.isoformat()}")
        version = max(c.version for c in earlier)
    else:
        version = target
    if not 0 <= version <= current:
        raise MaintenanceError(f"{name}: no version {version} (the current one is {current})")
    chosen = commits.get(version, Commit(version, None, "?"))
    now_files = set(table.file_uris())
    target_files = set(open_table(settings, name, version).file_uris())
    # A vacuum deletes only files the current version does not use: a target using none other
    # cannot miss one.
    vacuumed = _last_vacuum(entries, after=version) if target_files - now_files else None
    return RestorePlan(
        name,
        commits.get(current, Commit(current, None, "?")),
        chosen,
        len(now_files),
        len(target_files),
        commits.get(version + 1) if version < current else None,
        vacuumed,
    )


def _last_vacuum(entries: list[dict[str, Any]], after: int) -> Commit | None:
    """The newest commit after version ``after`` that ended a vacuum having deleted files."""
    vacuums = [
        _commit(entry)
        for entry in entries
        if entry.get("operation") == "VACUUM END"
        and int(entry.get("version", -1)) > after
        and _deleted_files(entry) > 0
    ]
    return max(vacuums, key=lambda commit: commit.version, default=None)


def _deleted_files(entry: dict[str, Any]) -> int:
    metrics = entry.get("operationMetrics") or {}
    try:
        return int(metrics.get("numDeletedFiles", 0))
    except (TypeError, ValueError):
        return 1  # a vacuum that says otherwise may have deleted some


def execute_restore(settings: Settings, plan: RestorePlan) -> dict[str, Any]:
    """Make the plan's target version current, as a new commit; refused when the table has
    moved since the plan, since the restore would then also undo commits nobody was shown."""
    table = open_table(settings, plan.table)
    if table.version() != plan.current.version:
        raise MaintenanceError(
            f"{plan.table}: it was at version {plan.current.version} when planned and is at "
            f"{table.version()} now (is a writer running?): stop its writers "
            f"({', '.join(plan.writers) or 'none known'}) and plan again"
        )
    try:
        return dict(table.restore(plan.target.version))
    except DeltaError as exc:
        if "missing file" not in str(exc).lower():
            raise
        vacuum = f" by the vacuum of version {plan.vacuumed.version}" if plan.vacuumed else ""
        raise MaintenanceError(
            f"{plan.table}: version {plan.target.version} needs files that were deleted"
            f"{vacuum}; nothing changed. Restore a version after the last vacuum, or from a "
            f"backup ({one_line(str(exc))[:200]})"
        ) from None


def restore(settings: Settings, name: str, target: int | datetime) -> dict[str, Any]:
    """Make ``target`` (a version or a time) the current state, as a new commit."""
    return dict(open_table(settings, name).restore(target))


def _commit(entry: dict[str, Any]) -> Commit:
    stamp = entry.get("timestamp")
    when = datetime.fromtimestamp(stamp / 1000, tz=UTC) if isinstance(stamp, int) else None
    return Commit(int(entry.get("version", -1)), when, str(entry.get("operation", "?")))
