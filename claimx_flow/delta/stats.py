"""What a Delta table holds, for the runbook's weekly "validate Delta table row counts": its
version and last commit, files and bytes, rows, and (asked for) whether any key is held twice.

Rows come from the files' own statistics (``numRecords`` in the log), so counting reads no data.
The key check reads the key columns whole: the law says no row twice, and only a full look at
the keys proves it (a weekly job, not a stage's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.delta.maintenance import MaintenanceError, open_table
from claimx_flow.delta.tables import TABLES

SHOWN_DUPLICATES = 10
"""Keys held more than once that a report names (all are counted)."""


@dataclass(frozen=True)
class KeyCheck:
    keys: tuple[str, ...]
    distinct: int
    duplicated: int
    """Keys held by more than one row."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    """Up to ``SHOWN_DUPLICATES`` of them, each with its row count (``rows``)."""


@dataclass(frozen=True)
class TableStats:
    name: str
    exists: bool
    version: int | None = None
    committed_at_ms: int | None = None
    files: int = 0
    bytes: int = 0
    rows: int | None = None
    """None when a file was written without statistics."""
    key_check: KeyCheck | None = None


def table_stats(settings: Settings, name: str, *, check_keys: bool = False) -> TableStats:
    """The table as it is now; one not written yet is ``exists=False``, not an error."""
    if name not in TABLES:
        raise MaintenanceError(f"unknown table {name!r} (one of {', '.join(TABLES)})")
    try:
        table = open_table(settings, name)
    except MaintenanceError:
        return TableStats(name, exists=False)
    actions = pa.table(table.get_add_actions(flatten=True))
    records = actions.column("num_records") if "num_records" in actions.schema.names else None
    rows = None
    if records is not None and records.null_count == 0:
        rows = int(pc.sum(records).as_py() or 0)
    (last,) = table.history(1) or [{}]
    return TableStats(
        name,
        exists=True,
        version=table.version(),
        committed_at_ms=last.get("timestamp"),
        files=actions.num_rows,
        bytes=int(pc.sum(actions.column("size_bytes")).as_py() or 0),
        rows=rows,
        key_check=_key_check(table, TABLES[name].keys) if check_keys else None,
    )


def _key_check(table: DeltaTable, keys: tuple[str, ...]) -> KeyCheck:
    held = table.to_pyarrow_table(columns=list(keys))
    counts = held.group_by(list(keys)).aggregate([([], "count_all")])
    twice = counts.filter(pc.greater(counts.column("count_all"), 1))
    examples = [
        {**{k: row[k] for k in keys}, "rows": row["count_all"]}
        for row in twice.slice(0, SHOWN_DUPLICATES).to_pylist()
    ]
    return KeyCheck(keys, counts.num_rows, twice.num_rows, examples)
