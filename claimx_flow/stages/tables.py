"""Rows into their Delta tables: converted to Arrow where the stage runs, committed by one
committer per table; a row its table refuses dead-letters the message it came from, and the
rest of the batch lands.

A row that cannot be converted to the table's schema (a text Arrow cannot encode, a value out
of range, an empty key) would fail the whole batch's write, and the replay would fail it again:
one poisoned message would stop the stage for good. So a batch is converted before anything is
written (``convert``), and a batch that does not convert is split until the rows that do not
fit are found; their messages go to the stage's DLQ with the reason, the rest convert.

A MERGE that still fails is split the same way, but a row is dead-lettered only once the
storage has shown it takes writes, since a refused row's message is dead-lettered as permanent
while its other outputs (the next stage's task) have already gone on. The storage is at fault,
and the step fails for recovery to replay the epoch, when:
- it raises what only storage raises (an I/O error, a commit conflict past its retries, a
  table that is not there);
- it does not answer a read of the table's version;
- it takes no write: one empty commit to the table's log (``DeltaWriter.write_refused``),
  made before any row is dead-lettered, and again when rows were refused since. A full volume, a
  read-only one, or an object store answering 403 or 503 to writes while it answers reads
  fails every row alike, and delta-rs reports a failed data-file write as a plain
  ``DeltaError``, as it would a row's fault. The write is made as soon as two messages are
  refused with nothing landed, so an outage costs log2(rows) + 2 writes, not one per row.
  It writes no data file: a fault that fails data files alone (a volume with room for a log
  entry but not for a file) is taken for the rows'.

Once that write is taken, the refused rows are merged once more before any is dead-lettered:
a storage that refused writes for a while, and took them again during the split, refused them
for itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from claimx_flow.delta.tables import TABLES, Refusal, RowSchemaError, TableSpec, convert
from claimx_flow.delta.writer import DeltaWriter, WriteOutcome, collapse_by_key
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import MessageIds
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.stages.outputs import RecordSender, RowBatch, SourcedRow, StageBatch, StageOutput

log = logging.getLogger(__name__)


def row_batch(
    spec: TableSpec, sourced: Sequence[SourcedRow]
) -> tuple[RowBatch | None, list[Refusal[SourcedRow]]]:
    """Rows (dicts) made by one stage batch as one ``RowBatch``, and the rows that do not fit."""
    table, kept, refused = convert(sourced, lambda part: spec.to_arrow([row for row, _ in part]))
    if table is None:
        return None, refused
    return RowBatch(table, [source for _, source in kept]), refused


def dead_letter(
    router: FailureRouter, table: str, refused: Sequence[Refusal[SourcedRow]]
) -> list[OutboundRecord]:
    """One DLQ record per refused message, however many of its rows were refused."""
    letters: dict[tuple[str, int, int], OutboundRecord] = {}
    for (row, source), error in refused:
        where = (source.topic, source.partition, source.offset)
        if where not in letters:
            letters[where] = _letter(router, table, row, source, error)
    if refused:
        log.error(
            "%s: %d row(s) refused, %d message(s) dead-lettered; first: %s",
            table,
            len(refused),
            len(letters),
            refused[0][1],
        )
    return list(letters.values())


def gathered(
    lane: str | None, outputs: Sequence[StageOutput], router: FailureRouter | None
) -> StageBatch:
    """Outputs handed over one at a time, as one ``StageBatch``: the records in order, each
    table's rows converted to Arrow here, where the stage runs; the messages of rows that do
    not fit are dead-lettered through ``router`` (a stage that writes rows has a DLQ). Rows a
    stage handed over in Arrow already come first in their table, in the order given."""
    batch = StageBatch(lane)
    rows: dict[str, list[SourcedRow]] = {}
    ready: dict[str, list[RowBatch]] = {}
    for output in outputs:
        if isinstance(output, OutboundRecord):
            batch.records.append(output)
        elif isinstance(output[1], RowBatch):
            ready.setdefault(output[0], []).append(output[1])
        else:
            table, row = output
            rows.setdefault(table, []).append(row)
    for table, sourced in rows.items():
        converted, refused = row_batch(TABLES[table], sourced)
        if converted is not None:
            ready.setdefault(table, []).append(converted)
        if refused:
            assert router is not None, f"rows for {table} from a stage without a DLQ"
            batch.records.extend(dead_letter(router, table, refused))
    for table, parts in ready.items():
        batch.tables[table] = joined(parts)
    return batch


def joined(parts: Sequence[RowBatch]) -> RowBatch:
    """One table's row batches as one, rows and their sources in order (at least one part)."""
    if len(parts) == 1:
        return parts[0]
    return RowBatch(
        pa.concat_tables([part.rows for part in parts]),
        [source for part in parts for source in part.sources],
    )


@dataclass
class TableCommitter:
    """Commits one table's row batches as one keyed write; rows the write refuses go to the
    stage's DLQ through ``router``."""

    writer: DeltaWriter
    router: FailureRouter
    sender: Callable[[], RecordSender]
    """Made on the first refusal: most committers never need one."""
    on_write: Callable[[WriteOutcome], None] = lambda outcome: None
    _sending: RecordSender | None = field(default=None, init=False)

    def commit(self, items: list[RowBatch]) -> None:
        batches = [b for b in items if b.rows.num_rows]
        if not batches:
            return
        whole = joined(batches)
        rows, sources = collapsed(self.writer.spec, whole.rows, whole.sources)
        split = _Split(rows=rows.num_rows)
        try:
            self._merge(rows, sources, split)
            if split.refused:
                self._check_writes(split)
                split = self._again(split)
        finally:
            self.writer.be_patient()  # spent by a failed write (``_merge``): back for the next
        if split.refused:
            if self._sending is None:
                self._sending = self.sender()
            self._sending.write_batch(dead_letter(self.router, self._table, split.refused))

    def close(self) -> None:
        if self._sending is not None:
            self._sending.close()

    def _merge(self, rows: pa.Table, sources: list[KafkaRecord], split: _Split) -> None:
        try:
            outcome = self.writer.merge_table(rows)
        except Exception as error:
            # The write rode out the storage: the rest of this commit (the storage's checks,
            # the halves of a split) fails fast.
            self.writer.hurry()
            if isinstance(error, STORAGE_FAULTS) or not self.writer.answers():
                raise  # the storage, not the rows: fail the step, replay the epoch
            if rows.num_rows == 1:
                split.refused.append(((rows.to_pylist()[0], sources[0]), error))
                early = not split.landed and not split.checked_at
                if early and len(split.messages()) >= 2:
                    self._check_writes(split)  # an outage fails here, early (once)
                return
            log.warning(
                "%s: MERGE of %d rows failed (%s); splitting", self._table, rows.num_rows, error
            )
            middle = rows.num_rows // 2
            self._merge(rows.slice(0, middle), sources[:middle], split)
            self._merge(rows.slice(middle), sources[middle:], split)
            return
        split.landed = True
        self.on_write(outcome)

    def _again(self, split: _Split) -> _Split:
        """The refused rows merged once more, now that the storage has shown it takes writes: a
        storage that refused writes for a while, and took them again during the split, refused
        them for itself, not for their values. What is refused again is checked as before."""
        sourced = [row for row, _ in split.refused]
        again = _Split(rows=len(sourced))
        self._merge(
            self.writer.spec.to_arrow([row for row, _ in sourced]),
            [source for _, source in sourced],
            again,
        )
        if again.refused:
            self._check_writes(again)
        return again

    def _check_writes(self, split: _Split) -> None:
        """Fail the step unless the storage takes a write now; once per commit, and again
        before the end when rows were refused after the last time (an outage may start
        halfway through a long split)."""
        if split.checked_at == len(split.refused):
            return
        refusal = self.writer.write_refused()
        if refusal is not None:
            log.error(
                "%s: %d of %d rows refused and the storage takes no write: the storage is at "
                "fault, not the rows; the step fails (a row's error: %s)",
                self._table,
                len(split.refused),
                split.rows,
                split.refused[-1][1],
            )
            raise refusal from split.refused[-1][1]
        split.checked_at = len(split.refused)

    @property
    def _table(self) -> str:
        return self.writer.spec.name


STORAGE_FAULTS = (OSError, CommitFailedError, TableNotFoundError)
"""What delta-rs raises only for the storage or the log, never for a row's values. Not
``DeltaProtocolError``: delta-rs raises it for a row that breaks a table constraint too."""


@dataclass
class _Split:
    """One commit's split MERGE so far: its rows, those refused, whether any part landed, and
    where the storage was last seen to take a write."""

    rows: int
    refused: list[Refusal[SourcedRow]] = field(default_factory=list)
    landed: bool = False
    checked_at: int = 0
    """How many rows had been refused when the storage last took a write."""

    def messages(self) -> set[tuple[str, int, int]]:
        """The messages refused (one message may have several rows refused)."""
        return {(source.topic, source.partition, source.offset) for (_, source), _ in self.refused}


def collapsed(
    spec: TableSpec, rows: pa.Table, sources: list[KafkaRecord]
) -> tuple[pa.Table, list[KafkaRecord]]:
    """One row per key, as a MERGE requires, by the table's write mode (``collapse_by_key``);
    the source kept for a key is its last row's. Rows with distinct keys (the usual batch) are
    returned as they are, checked at C speed when the key is one column."""
    if len(spec.keys) == 1 and pc.count_distinct(rows.column(spec.keys[0])).as_py() == len(rows):
        return rows, sources  # keys are required columns: no null to leave uncounted
    keys = _keys(spec, rows)
    if len(set(keys)) == len(keys):
        return rows, sources
    if spec.write_mode == "insert_if_absent":
        first: dict[object, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        kept = sorted(first.values())
        return rows.take(kept), [sources[i] for i in kept]
    last = {key: sources[index] for index, key in enumerate(keys)}
    merged = collapse_by_key(rows.to_pylist(), spec.keys, spec.version_column, spec.write_mode)
    table = spec.to_arrow(merged)
    return table, [last[key] for key in _keys(spec, table)]


def _keys(spec: TableSpec, rows: pa.Table) -> list[object]:
    if len(spec.keys) == 1:
        values: list[object] = rows.column(spec.keys[0]).to_pylist()
        return values
    return list(zip(*(rows.column(k).to_pylist() for k in spec.keys), strict=True))


def _letter(
    router: FailureRouter, table: str, row: dict[str, object], source: KafkaRecord, error: Exception
) -> OutboundRecord:
    return router.route(
        source,
        reason=str(error) if isinstance(error, RowSchemaError) else f"{table}: {error}",
        error_class=type(error).__name__,
        category=ErrorCategory.PERMANENT,
        ids=MessageIds(_text(row, "project_id"), _text(row, "event_id"), _text(row, "media_id")),
        whole=False,  # the message's other rows and tasks went on
    )


def _text(row: dict[str, object], column: str) -> str | None:
    value = row.get(column)
    return value if isinstance(value, str) and value else None
