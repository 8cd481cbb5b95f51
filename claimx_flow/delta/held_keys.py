"""Which keys a Delta table holds, kept in memory by the table's one committer.

Every keyed write must know which of its rows' keys the table holds already: new keys are
appended, held ones MERGEd (upsert) or dropped (``claimx_events``, insert-if-absent). Asking the
table on every commit reads it whole (a MERGE's join, or the stored ``event_id``s of the days a
batch touches), so each commit would cost more as the table grew.

This index reads a partition's keys once, when a batch first touches it, and then adds what the
committer writes. It holds 64-bit hashes (8 bytes a key), not the keys: a hash that matches only
says a key *may* be held. The writer then MERGEs that row, or for ``claimx_events`` confirms the
key against the table, so a hash collision costs a MERGE or a read, never a row. A row whose
hash does not match is certainly new.

The index is only right while its committer is the table's only writer, which the dataflows
guarantee (and the writer's commits are fenced against a twin). It remembers the table version
it reflects, and is dropped when the table moved without it (a compaction, another writer): the
next batch reads its partitions again. It keeps the partitions touched most recently: for
``claimx_events`` (by ``event_date``) a few days of keys; an unpartitioned table is one
partition, all of whose keys are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

Partition = tuple[object, ...]
"""A partition's values, in the table's partition column order (``()`` when unpartitioned)."""

PARTITIONS_KEPT = 3
"""Partitions whose keys stay in memory: today, yesterday and one more for ``event_date``."""

COMPACT_AFTER_CHUNKS = 64
"""Chunks a partition gathers (one per append) before they are joined into one array."""


@dataclass(frozen=True)
class RowPartitions:
    """Which partition each row of a batch is in: the distinct partitions in order of first row,
    and each row's position among them (``None`` when there is one partition or none).

    Found by Arrow's dictionary encoding, not a Python tuple per row: a commit of 60,000 media
    rows to an unpartitioned table, or a day of events, is one partition, and the per-row tuples
    and masks cost the committer's thread (and the stage's GIL) more than the hashing.
    """

    distinct: list[Partition]
    positions: pa.Array | None

    @classmethod
    def of(cls, rows: pa.Table, columns: Sequence[str]) -> RowPartitions:
        if not columns or not rows.num_rows:
            return cls([()] if rows.num_rows else [], None)
        column = rows.column(columns[0])
        if len(columns) == 1 and not column.null_count and _encodes_as_equal(column.type):
            encoded = column.combine_chunks().dictionary_encode()
            distinct: list[Partition] = [(value,) for value in encoded.dictionary.to_pylist()]
            return cls(distinct, encoded.indices if len(distinct) > 1 else None)
        each = list(zip(*(rows.column(c).to_pylist() for c in columns), strict=True))
        position: dict[Partition, int] = {}
        indices = [position.setdefault(partition, len(position)) for partition in each]
        return cls(list(position), pa.array(indices, pa.int32()) if len(position) > 1 else None)

    def select(self, position: int, values: pa.Array) -> pa.Array:
        """The ``values`` (one per row) of the rows in partition ``distinct[position]``."""
        if self.positions is None:
            return values
        return values.filter(pc.equal(self.positions, position))


def _encodes_as_equal(kind: pa.DataType) -> bool:
    """Whether Arrow's dictionary encoding groups values as Python's ``==`` does: not floats
    (NaN, -0.0) nor a column already dictionary-encoded (its dictionary may hold unused
    values). Partition columns are dates and text."""
    return not (pa.types.is_floating(kind) or pa.types.is_dictionary(kind))


def key_hashes(keys: Iterable[object]) -> pa.Array:
    """The keys' 64-bit hashes. Python's string hash is salted per process, which suits an index
    that lives and dies with its process."""
    return pa.array([hash(key) for key in keys], pa.int64())


class HeldKeys:
    """Hashes of the stored keys, by partition, for the table version in ``version``."""

    def __init__(self, partitions_kept: int = PARTITIONS_KEPT) -> None:
        self._kept = partitions_kept
        self._chunks: OrderedDict[Partition, list[pa.Array]] = OrderedDict()
        self.version: int | None = None

    def partitions(self) -> list[Partition]:
        return list(self._chunks)

    def follow(self, version: int) -> None:
        """Drop everything unless the index reflects table ``version``."""
        if version != self.version:
            self._chunks.clear()
            self.version = version

    def maybe_held(
        self,
        hashes: pa.Array,
        partitions: Sequence[Partition],
        load: Callable[[Partition], Iterable[list[object]]],
    ) -> pa.Array:
        """A boolean mask over ``hashes``: True where a key may be stored in one of
        ``partitions`` (loading a partition's stored keys, through ``load``, if not held yet)."""
        chunks = [chunk for partition in partitions for chunk in self._touch(partition, load)]
        self._let_go(len(partitions))
        found = [chunk.filter(pc.is_in(chunk, value_set=hashes)) for chunk in chunks]
        if not any(len(f) for f in found):
            return pa.array([False] * len(hashes), pa.bool_())
        return pc.is_in(hashes, value_set=pa.concat_arrays(found))

    def add(self, partition: Partition, hashes: pa.Array | pa.ChunkedArray) -> None:
        """Record keys written to ``partition`` (when its keys are held here)."""
        chunks = self._chunks.get(partition)
        if chunks is None or not len(hashes):
            return
        if isinstance(hashes, pa.ChunkedArray):
            hashes = hashes.combine_chunks()
        chunks.append(hashes)
        if len(chunks) > COMPACT_AFTER_CHUNKS:
            self._chunks[partition] = [pa.concat_arrays(chunks)]

    def _touch(
        self, partition: Partition, load: Callable[[Partition], Iterable[list[object]]]
    ) -> list[pa.Array]:
        """The partition's chunks, read through ``load`` the first time; now the most recent."""
        if partition in self._chunks:
            self._chunks.move_to_end(partition)
        else:
            stored = [key_hashes(keys) for keys in load(partition)]
            self._chunks[partition] = [pa.concat_arrays(stored) if stored else key_hashes(())]
        return self._chunks[partition]

    def _let_go(self, in_use: int) -> None:
        """Drop the partitions touched longest ago beyond those kept (never one of the
        ``in_use`` just touched: a batch may span more days than are kept)."""
        while len(self._chunks) > max(self._kept, in_use):
            self._chunks.popitem(last=False)
