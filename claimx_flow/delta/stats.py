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
from claimx_flow.storage.locations import table_location

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
    location: str
    """Where it was looked for: a table "not written yet" in the wrong place reads the same."""
    version: int | None = None
    committed_at_ms: int | None = None
    files: int = 0
    bytes: int = 0
    rows: int | None = None
    """None when the log cannot say (``rows_unknown`` says why)."""
    rows_unknown: str | None = None
    key_check: KeyCheck | None = None


def table_stats(settings: Settings, name: str, *, check_keys: bool = False) -> TableStats:
    """The table as it is now; one not written yet is ``exists=False``, not an error."""
    if name not in TABLES:
        raise MaintenanceError(f"unknown table {name!r} (one of {', '.join(TABLES)})")
    location, _ = table_location(settings, name)
    try:
        table = open_table(settings, name)
    except MaintenanceError:
        return TableStats(name, exists=False, location=location)
    actions = pa.table(table.get_add_actions(flatten=True))
    rows, unknown = _rows(table, actions)
    (last,) = table.history(1) or [{}]
    return TableStats(
        name,
        exists=True,
        location=location,
        version=table.version(),
        committed_at_ms=last.get("timestamp"),
        files=actions.num_rows,
        bytes=int(pc.sum(actions.column("size_bytes")).as_py() or 0),
        rows=rows,
        rows_unknown=unknown,
        key_check=_key_check(name, table, TABLES[name].keys) if check_keys else None,
    )


def _rows(table: DeltaTable, actions: pa.Table) -> tuple[int | None, str | None]:
    """The rows the files' statistics count, or why they cannot: a file written without them,
    or rows deleted by deletion vectors, which the files' counts still hold."""
    if "deletionVectors" in (table.protocol().reader_features or []):
        return None, "the table may delete rows by deletion vectors, which its files' counts hold"
    if "num_records" not in actions.schema.names or actions.column("num_records").null_count:
        return None, "a file was written without statistics"
    return int(pc.sum(actions.column("num_records")).as_py() or 0), None


def _key_check(name: str, table: DeltaTable, keys: tuple[str, ...]) -> KeyCheck:
    try:
        held = table.to_pyarrow_table(columns=list(keys))
        counts = held.group_by(list(keys)).aggregate([([], "count_all")])
    except pa.ArrowException as exc:  # a key column an older table lacks, among others
        raise MaintenanceError(f"{name}: cannot read its keys {list(keys)}: {exc}") from None
    except MemoryError:
        raise MaintenanceError(
            f"{name}: its keys {list(keys)} do not fit in memory here; run --keys where more is"
        ) from None
    twice = counts.filter(pc.greater(counts.column("count_all"), 1))
    examples = [
        {**{k: row[k] for k in keys}, "rows": row["count_all"]}
        for row in twice.slice(0, SHOWN_DUPLICATES).to_pylist()
    ]
    return KeyCheck(keys, counts.num_rows, twice.num_rows, examples)
