"""Delta table upkeep from the runbook: compact small files, vacuum old ones, read the history,
restore a version — on local or OneLake tables, through the same locations the stages use.

Vacuum keeps delta-rs's retention safety (7 days unless the table says otherwise): files a
reader or a time-travel query may still need are not removed unless the operator forces it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.errors import ClaimxError
from claimx_flow.storage.locations import table_location


class MaintenanceError(ClaimxError):
    """A maintenance command that cannot run as asked."""


def open_table(settings: Settings, name: str) -> DeltaTable:
    if name not in TABLES:
        raise MaintenanceError(f"unknown table {name!r} (one of {', '.join(TABLES)})")
    uri, options = table_location(settings, name)
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        raise MaintenanceError(f"{name}: no Delta table at {uri} yet") from None


def optimize(settings: Settings, name: str) -> dict[str, Any]:
    """Compact small files into larger ones; idempotent."""
    return dict(open_table(settings, name).optimize.compact())


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
    table = open_table(settings, name)
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


def history(settings: Settings, name: str, limit: int = 20) -> list[dict[str, Any]]:
    return list(open_table(settings, name).history(limit))


def restore(settings: Settings, name: str, target: int | datetime) -> dict[str, Any]:
    """Make ``target`` (a version or a time) the current state, as a new commit."""
    return dict(open_table(settings, name).restore(target))
