"""Delta rows about the target, read with the filter pushed down to the table.

The filter goes to deltalake as a file-pruning predicate: files whose partition values and
min/max statistics cannot hold a match are dropped while the log is replayed, before any is
read. The rows of the files that remain are then filtered exactly in memory (a row filter
inside the scan fails on tables whose Parquet files hold ``string_view`` columns under a
``string`` schema, as the partitioned ``claimx_events`` does). The rows a trace shows are
capped (``ROW_CAP`` per table); what the verdict needs is taken from all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from claimx_flow.config import Settings
from claimx_flow.delta.tables import ATTACHMENTS, EVENTS, MEDIA, TABLES
from claimx_flow.models.redaction import mask_url_queries, one_line, redact, truncate
from claimx_flow.storage.locations import table_location
from claimx_flow.trace.model import Evidence, TableRow, Target, safe_fields
from claimx_flow.trace.scan import TraceError

ROW_CAP = 500
"""Rows shown per table; verdicts are taken from all of them (:class:`Evidence`)."""
NOTE_CHARS = 240

Condition = tuple[str, str, Any]
"""``(column, "=", value)`` or ``(column, "in", [values])``."""
Filter = list[list[Condition]]
"""Disjunctive normal form: any inner list whose conditions all hold."""

ENRICHED_TABLES = tuple(
    name for name, spec in TABLES.items() if "event_id" in spec.columns and name != EVENTS.name
)
"""Tables the enricher writes, each row naming the event that last changed it."""


def read_table(settings: Settings, table: str, where: Filter, notes: list[str]) -> pa.Table:
    """Every row of ``table`` matching ``where``; none from a table not created yet, and a table
    that cannot be read (corrupt: a file its log names is gone) is a note, not a failed trace.
    The storage out of reach is a ``TraceError``: every other table would wait as long for it,
    and a verdict made without Delta could call a stored file missing."""
    if not where:
        return pa.table({})
    uri, options = table_location(settings, table)
    try:
        dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset(
            file_pruning_predicate=pruning_sql(where)
        )
        return dataset.to_table().filter(row_filter(where))
    except TableNotFoundError:
        return pa.table({})
    except (DeltaError, ValueError, FileNotFoundError) as exc:
        reason = f"{type(exc).__name__}: {peer_text(settings, exc)}"
        notes.append(f"{table}: not read ({truncate(reason, NOTE_CHARS)})")
        return pa.table({})
    except OSError as exc:  # the storage itself
        raise TraceError(
            f"cannot read the Delta tables at {uri}: {peer_text(settings, exc)}"
        ) from None


def peer_text(settings: Settings, error: BaseException) -> str:
    """A peer's error as one line, with the configured secrets and URL queries masked, as the
    red line does: Delta's errors name paths and URLs, and notes reach the JSON document."""
    return one_line(mask_url_queries(redact(str(error), settings.secret_values())))


def shown(table: str, data: pa.Table, notes: list[str]) -> list[TableRow]:
    """The first ``ROW_CAP`` rows, for display only (a note says when there were more)."""
    if data.num_rows > ROW_CAP:
        notes.append(f"{table}: showing {ROW_CAP} of {data.num_rows} matching rows")
    rows = data.slice(0, min(ROW_CAP, data.num_rows)).to_pylist() if data.num_rows else []
    return [TableRow(table, safe_fields(row)) for row in rows]


def read_rows(settings: Settings, table: str, where: Filter, notes: list[str]) -> list[TableRow]:
    """The rows of :func:`read_table`, capped for display."""
    return shown(table, read_table(settings, table, where, notes), notes)


def values(data: pa.Table, column: str) -> set[str]:
    """Every value of ``column`` in ``data`` (none when the table has no such column)."""
    if column not in data.column_names:
        return set()
    return {str(v) for v in data.column(column).to_pylist() if v is not None}


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _sql(condition: Condition) -> str:
    column, op, value = condition
    if op == "in":
        return f"{column} IN ({', '.join(_literal(v) for v in value)})"
    return f"{column} = {_literal(value)}"


def pruning_sql(where: Filter) -> str:
    """The filter as the SQL predicate deltalake prunes files with."""
    return " OR ".join("(" + " AND ".join(_sql(c) for c in clause) + ")" for clause in where)


def _expression(condition: Condition) -> pc.Expression:
    column, op, value = condition
    if op == "in":
        return pc.is_in(pc.field(column), pa.array([str(v) for v in value], pa.string()))
    return pc.field(column) == str(value)


def row_filter(where: Filter) -> pc.Expression:
    """The same filter over rows in memory."""
    clauses = []
    for clause in where:
        expression = _expression(clause[0])
        for condition in clause[1:]:
            expression = expression & _expression(condition)
        clauses.append(expression)
    combined = clauses[0]
    for expression in clauses[1:]:
        combined = combined | expression
    return combined


def _any_of(column: str, values: Sequence[str]) -> Filter:
    values = sorted(set(values))
    if not values:
        return []
    if len(values) == 1:
        return [[(column, "=", values[0])]]
    return [[(column, "in", values)]]


def first_rows(settings: Settings, target: Target, notes: list[str]) -> list[TableRow]:
    """The events rows about the target: they name its project and media before Kafka is read."""
    column = {"event": "event_id", "project": "project_id", "media": "media_id"}[target.kind]
    return read_rows(settings, EVENTS.name, _any_of(column, [target.id]), notes)


def entity_rows(
    settings: Settings,
    target: Target,
    event_ids: Sequence[str],
    media_ids: Sequence[str],
    notes: list[str],
) -> tuple[list[TableRow], Evidence]:
    """Every row the target's events wrote (their ``event_id`` lineage), its media rows and
    its attachments (for a project, every row of the project), capped for display; and what
    they prove, from all of them."""
    found: list[TableRow] = []
    evidence = Evidence()
    for table in ENRICHED_TABLES:
        spec = TABLES[table]
        where: Filter = []
        if target.kind == "project" and "project_id" in spec.columns:
            where = _any_of("project_id", [target.id])
        else:
            where = _any_of("event_id", event_ids)
            if table == MEDIA.name:
                where += _any_of("media_id", media_ids)
        data = read_table(settings, table, where, notes)
        found += shown(table, data, notes)
        for event in values(data, "event_id"):
            evidence.written_by.setdefault(event, set()).add(table)
    if target.kind == "project":
        where = _any_of("project_id", [target.id])
    else:
        where = _any_of("media_id", media_ids) + _any_of("source_event_id", event_ids)
    data = read_table(settings, ATTACHMENTS.name, where, notes)
    found += shown(ATTACHMENTS.name, data, notes)
    evidence.stored_media = values(data, "media_id")
    return _distinct(found), evidence


def _distinct(rows: list[TableRow]) -> list[TableRow]:
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    kept = []
    for row in rows:
        key = (row.table, tuple(row.row.get(k) for k in TABLES[row.table].keys))
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept
