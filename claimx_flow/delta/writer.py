"""Idempotent writes to Delta tables: keyed, never blind appends.

Every write may be replayed after a crash (the dataflows are at-least-once), so a write is
keyed on the table's key: replaying it changes nothing. Upsert tables keep two rules protecting
data already there: a partial update (policyholder, xa-linking) never overwrites a column with
null, and a row older than the stored one (by the table's version column) never overwrites it.

Which keys the table holds decides how a row is written. A table's one committer keeps the
64-bit hashes of its stored keys (``HeldKeys``, 8 bytes a key), per partition, read from the
table once per partition and then kept up to date with its own commits. A row whose key hash is
not there is new to the table, and is appended: an append reads nothing of the table. The
others are MERGEd (upsert), or for ``claimx_events`` (insert-if-absent on one key column)
confirmed against the table's key column and dropped when held. A MERGE of every row, as
before, read the whole target on every commit to find that most rows were new: its time and
memory grew with the table (1 GB at 240,000 projects) instead of the batch. A hash that
matches a new key only sends that row through the MERGE, which inserts it (or, for
``claimx_events``, through a read of the table's key column, which finds it absent).

This is safe only with one writer per table, which the dataflows guarantee (one committer per
table). Each commit carries a Delta application transaction numbered after the table's last
one, so a restarted twin that read the same version has its commit refused and retried rather
than appending keys it did not know were there. The index also drops itself when the table
moved without it (a compaction, another writer) and is read again.

A table made before a column was declared (``claimx_events`` before ``raw_data``) gets the
columns it lacks, nullable, in one ``ADD COLUMN`` commit when the writer opens it, before its
first MERGE; rows already there read null in them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Field, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from claimx_flow.config import Settings
from claimx_flow.delta.held_keys import HeldKeys, RowPartitions, key_hashes
from claimx_flow.delta.tables import TableSpec, WriteMode
from claimx_flow.storage.locations import table_location

log = logging.getLogger(__name__)

Row = Mapping[str, Any]

# Two committers racing on one table is a design error (one committer per table), but a
# concurrent compaction or a restarted twin can still win a commit: retry a bounded number of
# times, re-reading the table each time.
COMMIT_ATTEMPTS = 5

_PLAIN = re.compile(r"[A-Za-z0-9_.:@+\-]{1,200}")
"""Keys written as SQL literals only when nothing in them could be read as anything else: a
literal read wrong would leave a stored row unmatched, and the MERGE would insert it again."""
PRUNING_KEYS = 1000
"""Most rows whose keys a MERGE also names as literals, for file pruning (a longer list costs
more to plan than it saves)."""


@dataclass(frozen=True)
class Prepared:
    """Rows ready for one keyed write: ``source`` None when there was nothing to write."""

    source: pa.Table | None
    rows: int
    started: float


@dataclass(frozen=True)
class WriteOutcome:
    table: str
    source_rows: int
    inserted: int
    updated: int
    seconds: float


class DeltaWriter:
    """Writes one table; created on first use with the declared schema and partitioning."""

    def __init__(
        self,
        spec: TableSpec,
        uri: str,
        storage_options: dict[str, str] | None = None,
        patience: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.uri = uri
        self._storage_options = storage_options
        self._patience = patience
        """Storage options that retry a failing storage for longer (``ride_out``), used until
        a write fails after them (``hurry``) and again from ``be_patient``."""
        self._patient = patience is not None
        self._table: DeltaTable | None = None
        self._held = HeldKeys()

    def hurry(self) -> None:
        """Fail fast from now on: a write failed after its patience, and what follows (the
        checks of the storage, the halves of a split batch) would each spend it again."""
        if self._patient:
            self._patient, self._table = False, None

    def be_patient(self) -> None:
        """Ride out a failing storage again (the next commit)."""
        if self._patience is not None and not self._patient:
            self._patient, self._table = True, None

    @property
    def _options(self) -> dict[str, str] | None:
        if self._patient and self._patience is not None:
            return {**(self._storage_options or {}), **self._patience}
        return self._storage_options

    def write(self, rows: Sequence[Row]) -> WriteOutcome:
        """Merge ``rows`` into the table by its write mode; safe to repeat with the same rows."""
        return self.merge(self.prepare(rows))

    def prepare(self, rows: Sequence[Row]) -> Prepared:
        """The rows collapsed by key and converted to the table's schema: pure, no I/O.

        Raises ``RowSchemaError`` when a row does not fit, before anything is written.
        """
        started = time.perf_counter()
        collapsed = collapse_by_key(rows, self.spec.keys, self.spec.version_column, self.mode)
        source = self.spec.to_arrow(collapsed) if collapsed else None
        return Prepared(source, len(collapsed), started)

    def merge_table(self, rows: pa.Table) -> WriteOutcome:
        """One keyed write of rows already in the table's schema, one per key."""
        return self.merge(
            Prepared(rows if rows.num_rows else None, rows.num_rows, time.perf_counter())
        )

    @property
    def mode(self) -> WriteMode:
        return self.spec.write_mode

    def merge(self, prepared: Prepared) -> WriteOutcome:
        """One keyed write of prepared rows (one per key): what the table may hold already is
        MERGEd (or, insert-if-absent, dropped), the rest appended."""
        if prepared.source is None:
            return WriteOutcome(self.spec.name, 0, 0, 0, 0.0)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = self._open()
            try:
                inserted, updated = self._write_keyed(table, prepared.source)
            except Exception as exc:  # delta-rs raises CommitFailedError and friends
                if "commit" not in str(exc).lower() or attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning("%s: commit conflict, retrying (%d)", self.spec.name, attempt)
                self._table = None
                time.sleep(0.05 * attempt)
                continue
            return WriteOutcome(
                self.spec.name,
                prepared.rows,
                inserted,
                updated,
                time.perf_counter() - prepared.started,
            )
        raise AssertionError("unreachable")

    def _write_keyed(self, table: DeltaTable, source: pa.Table) -> tuple[int, int]:
        """Rows inserted and updated: rows whose key the index of held keys (``HeldKeys``) says
        the table may hold are MERGEd (one key column insert-if-absent: confirmed against the
        table and dropped when held); the rest, new to the table, are appended, which reads
        nothing of it. Up to two commits, each safe to repeat: a replay finds the first one's
        keys held and MERGEs them again, changing nothing."""
        self._held.follow(table.version())
        hashes = key_hashes(self._key_values(source))
        partitions = self._partitions_of(source)
        maybe = self._held.maybe_held(hashes, partitions.distinct, self._stored_keys(table))
        inserted = updated = 0
        if pc.any(maybe).as_py():
            if self.mode == "insert_if_absent" and len(self.spec.keys) == 1:
                key = source.column(self.spec.keys[0]).combine_chunks()
                held = self._held_keys(table, source.filter(maybe))
                absent = pc.invert(pc.is_in(key, value_set=held))
            else:
                held_rows = source.filter(maybe)
                metrics = self._committed(
                    table,
                    partial(self._merge, table, held_rows),
                    self._partitions_of(held_rows),
                    hashes.filter(maybe),
                )
                inserted += int(metrics.get("num_target_rows_inserted", 0))
                updated += int(metrics.get("num_target_rows_updated", 0))
                absent = pc.invert(maybe)
            source, hashes = source.filter(absent), hashes.filter(absent)
            partitions = self._partitions_of(source)
        if source.num_rows:
            self._committed(table, partial(self._append, table, source), partitions, hashes)
            inserted += source.num_rows
        return inserted, updated

    def _committed(
        self,
        table: DeltaTable,
        commit: Callable[[CommitProperties], Any],
        partitions: RowPartitions,
        hashes: pa.Array,
    ) -> Any:
        """Run one commit of ours, fenced (``_fence``); the index learns the keys it wrote only
        when no other commit landed beside it, and is otherwise read again at the next write. A
        MERGE that changed nothing commits nothing, and the index stays as it was."""
        before = table.version()
        self._held.version = None  # until the index holds what the commit wrote
        result = commit(self._fence(table))
        after = table.version()  # delta-rs moves ``table`` to the version it committed
        if after == before + 1:
            self._remember(partitions, hashes)
            self._held.version = after
        elif after == before:
            self._held.version = before
        return result

    def _fence(self, table: DeltaTable) -> CommitProperties:
        """An application transaction numbered after the table's last one for this table's
        committer. Two committers that read the same version (a restarted twin) would commit
        the same number, and Delta refuses the second ("concurrent transaction"): an append
        on its own never conflicts, and a twin's blind append could write a key twice."""
        app = f"claimx-flow/{self.spec.name}"
        number = (table.transaction_version(app) or 0) + 1
        return CommitProperties(app_transactions=[Transaction(app_id=app, version=number)])

    def _append(
        self, table: DeltaTable, rows: pa.Table, properties: CommitProperties
    ) -> dict[str, Any]:
        write_deltalake(table, rows, mode="append", commit_properties=properties)
        return {}

    def _key_values(self, source: pa.Table) -> list[object]:
        """Each row's key: the value of a one-column key, else the tuple of its values."""
        columns = [source.column(k).to_pylist() for k in self.spec.keys]
        return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))

    def _partitions_of(self, source: pa.Table) -> RowPartitions:
        """Which partition each row is in (``RowPartitions``)."""
        return RowPartitions.of(source, self.spec.partition_by)

    def _remember(self, partitions: RowPartitions, hashes: pa.Array) -> None:
        """Add written keys to the index, each in its own partition."""
        for position, partition in enumerate(partitions.distinct):
            self._held.add(partition, partitions.select(position, hashes))

    def _stored_keys(
        self, table: DeltaTable
    ) -> Callable[[tuple[object, ...]], Iterator[list[object]]]:
        """A reader of one partition's stored keys, streamed (files pruned by delta-rs)."""

        def read(partition: tuple[object, ...]) -> Iterator[list[object]]:
            values = {c: [v] for c, v in zip(self.spec.partition_by, partition, strict=True)}
            for batch in _batches(table, values, list(self.spec.keys)):
                yield self._key_values(pa.Table.from_batches([batch]))

        return read

    def _held_keys(self, table: DeltaTable, source: pa.Table) -> pa.Array:
        """The keys of ``source`` the table holds: its key column streamed from the partitions
        ``source`` touches (files pruned by delta-rs), matched here.

        Not a pyarrow dataset filter: files a MERGE or an optimize wrote carry statistics that
        pyarrow binds as ``string_view`` against the ``string`` column, and the scan fails
        ("no kernel matching input types (string, string_view)") on a table that has any.
        """
        key = self.spec.keys[0]
        wanted = source.column(key).combine_chunks().cast(pa.string())
        values = {c: source.column(c).unique().to_pylist() for c in self.spec.partition_by}
        found: list[pa.Array] = []
        for batch in _batches(table, values, [key]):
            stored = batch.column(0).cast(pa.string())
            found.append(stored.filter(pc.is_in(stored, value_set=wanted)))
        return pa.concat_arrays(found) if found else pa.array([], pa.string())

    def _merge(
        self, table: DeltaTable, source: pa.Table, properties: CommitProperties
    ) -> dict[str, Any]:
        merger = table.merge(
            source,
            predicate=self._match_predicate(source),
            source_alias="s",
            target_alias="t",
            commit_properties=properties,
        )
        if self.mode == "upsert":
            merger = merger.when_matched_update(
                self._coalescing_updates(), predicate=self._newer_predicate()
            )
        metrics: dict[str, Any] = merger.when_not_matched_insert_all().execute()
        return metrics

    def write_refused(self) -> Exception | None:
        """Why the table's storage takes no write now, or None when it does: one empty commit
        to its log, fenced and followed by the index like any of ours. After a failed write,
        it tells rows the table refuses from storage that refuses every write (a full volume,
        a read-only one, a store answering 403 or 503 to writes while it answers reads). It
        writes no data file: a fault that fails data files alone is not seen."""
        try:
            self._table = None
            table = self._open()
            self._held.follow(table.version())  # an index a failed commit left unsure goes
            empty = self.spec.schema.empty_table()
            self._committed(
                table,
                partial(self._append, table, empty),
                self._partitions_of(empty),
                key_hashes([]),
            )
        except Exception as exc:
            log.warning("%s: storage takes no write: %s", self.spec.name, exc)
            self._table = None
            return exc
        return None

    def answers(self) -> bool:
        """Whether the table's storage answers now: after a failed write, it tells a refused
        row (the storage answers) from storage that is down."""
        try:
            self._table = None
            self._open().version()
        except Exception as exc:
            log.warning("%s: storage does not answer: %s", self.spec.name, exc)
            return False
        return True

    def read(self) -> pa.Table:
        return self._open().to_pyarrow_table()

    def _open(self) -> DeltaTable:
        if self._table is None:
            try:
                table = DeltaTable(self.uri, storage_options=self._options)
            except TableNotFoundError:
                table = DeltaTable.create(
                    self.uri,
                    schema=self.spec.schema,
                    mode="ignore",
                    partition_by=list(self.spec.partition_by) or None,
                    name=self.spec.name,
                    storage_options=self._options,
                )
            self._table = self._with_all_columns(table)
        else:
            self._table.update_incremental()
        return self._table

    def _with_all_columns(self, table: DeltaTable) -> DeltaTable:
        """``table`` with every column of the spec, the missing ones added (nullable)."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            missing = self.missing_columns(table)
            if not missing:
                return table
            try:
                table.alter.add_columns([Field.from_arrow(f.with_nullable(True)) for f in missing])
            except Exception as exc:  # a commit conflict: another writer may have added them
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning("%s: adding columns failed (%s), retrying", self.spec.name, exc)
                time.sleep(0.05 * attempt)
                table = DeltaTable(self.uri, storage_options=self._options)
                continue
            log.warning(
                "%s: added the columns it lacked: %s",
                self.spec.name,
                ", ".join(f.name for f in missing),
            )
        return table

    def missing_columns(self, table: DeltaTable) -> list[pa.Field]:
        """The spec's columns ``table`` does not have, in the spec's order."""
        present = {field.name for field in table.schema().fields}
        return [field for field in self.spec.schema if field.name not in present]

    def _match_predicate(self, source: pa.Table) -> str:
        """Keys (and partition columns) equal; with few rows, also the first key among the
        source's values as literals, which delta-rs prunes target files by (their statistics),
        so a MERGE of a few keys reads the files that may hold them, not the table."""
        columns = [*self.spec.keys, *(c for c in self.spec.partition_by if c not in self.spec.keys)]
        predicate = " AND ".join(f"t.{_q(c)} = s.{_q(c)}" for c in columns)
        first = self.spec.keys[0]
        if source.num_rows <= PRUNING_KEYS and pa.types.is_string(
            self.spec.schema.field(first).type
        ):
            values = source.column(first).unique().to_pylist()
            if all(map(_PLAIN.fullmatch, values)):
                predicate += f" AND t.{_q(first)} IN ({', '.join(map(_sql_literal, values))})"
        return predicate

    def _coalescing_updates(self) -> dict[str, str]:
        return {
            _q(name): f"coalesce(s.{_q(name)}, t.{_q(name)})"
            for name in self.spec.schema.names
            if name not in self.spec.keys
        }

    def _newer_predicate(self) -> str | None:
        column = self.spec.version_column
        if column is None:
            return None
        c = _q(column)
        return f"t.{c} IS NULL OR s.{c} IS NULL OR s.{c} >= t.{c}"


RIDE_OUT_BACKOFF_MAX_S = 5.0
RIDE_OUT_TRY_TIMEOUT_S = 30.0
"""The longest pause between two tries of a request, and the longest a try may take: a try
may start up to ``seconds`` after the first, so one request takes at most ``seconds`` + both."""


def ride_out(seconds: float) -> dict[str, str]:
    """delta-rs's retries for a stage's writes to remote tables (storage options documented in
    delta-rs's "Advanced object storage configuration"): a request the storage fails (a refused
    connection, a 5xx, a throttle) is tried again for ``seconds``, 1 s apart at first, so a
    throttle or a blip of OneLake costs a slower commit, not a failed step. By default delta-rs
    gives up after 10 quick retries, within seconds. A longer outage still fails the step, and
    the restart waits at start (``claimx_flow/delta/reach.py``). A commit spends this patience
    once (``DeltaWriter.hurry``); commands that only read keep the default and fail fast."""
    return {
        "backoff_config.init_backoff": "1s",
        "backoff_config.max_backoff": f"{RIDE_OUT_BACKOFF_MAX_S:.0f}s",
        "backoff_config.base": "2",
        "max_retries": "1000",  # the time bounds the tries
        "retry_timeout": f"{seconds:.3f}s",
        "timeout": f"{RIDE_OUT_TRY_TIMEOUT_S:.0f}s",
    }


def writer_for(settings: Settings, spec: TableSpec, *, patient: bool = False) -> DeltaWriter:
    """The writer of ``spec`` where the settings put tables: local ``tables/<name>`` or OneLake;
    a stage's (``patient``) rides out a failing remote storage (``ride_out``)."""
    uri, storage_options = table_location(settings, spec.name)
    remote = patient and storage_options is not None
    patience = ride_out(settings.claimx_delta_retry_seconds) if remote else None
    return DeltaWriter(spec, uri, storage_options, patience)


def _q(column: str) -> str:
    return f"`{column}`"


def collapse_by_key(
    rows: Iterable[Row],
    keys: Sequence[str],
    version_column: str | None,
    mode: WriteMode,
) -> list[dict[str, Any]]:
    """One row per key, as a MERGE requires.

    insert_if_absent keeps the first row of a key. upsert folds the rows of a key oldest to newest
    (by ``version_column``, else arrival order), each non-null value overwriting the one before,
    the same rule the merge applies against the stored row.
    """
    if mode == "insert_if_absent" and len(keys) == 1:
        return _first_per_key(rows, keys[0])
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    ordered = list(rows)
    if version_column is not None and mode == "upsert":
        ordered.sort(key=lambda r: (r.get(version_column) is not None, r.get(version_column) or 0))
    for row in ordered:
        key = tuple(row.get(k) for k in keys)
        if any(part is None for part in key):
            raise ValueError(f"row without its key {tuple(keys)}: {key}")
        current = merged.get(key)
        if current is None:
            merged[key] = dict(row)
        elif mode == "upsert":
            current.update({c: v for c, v in row.items() if v is not None})
    return list(merged.values())


def _first_per_key(rows: Iterable[Row], key: str) -> list[dict[str, Any]]:
    """``collapse_by_key`` of insert-if-absent rows on one key column (``claimx_events``).

    The same answer without a key tuple and a generator per row: this runs on every ingested
    event, on the thread that commits behind the worker.
    """
    first: dict[Any, Row] = {}
    for row in rows:
        value = row.get(key)
        if value is None:
            raise ValueError(f"row without its key {(key,)}: {(value,)}")
        if value not in first:
            first[value] = row
    return [dict(row) for row in first.values()]


def _batches(
    table: DeltaTable, partitions: Mapping[str, Sequence[object]], columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """``columns`` of the table's files in the given partition values (by column), streamed:
    delta-rs prunes the files, nothing filters the rows."""
    touched = [_sql_in(column, values) for column, values in partitions.items()]
    dataset = table.to_pyarrow_dataset(
        file_pruning_predicate=" AND ".join(touched) if touched else None
    )
    return iter(dataset.to_batches(columns=columns))


def _sql_in(column: str, values: Sequence[object]) -> str:
    """``column IN (...)`` of partition values as text literals (dates as ISO), for delta-rs's
    file pruning."""
    texts = (v.isoformat() if isinstance(v, date) else str(v) for v in values)
    return f"{column} IN ({', '.join(_sql_literal(text) for text in texts)})"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
