"""Which keys an insert-if-absent table holds, kept in memory by the table's one committer.

``claimx_events`` is written insert-if-absent: before each append the committer must know which
of the batch's ``event_id`` values the table holds already. Reading the stored keys of the
partitions a batch touches on every commit costs time and memory that grow with the partition
(a day of events, for ``event_date``), so a day's ingest would slow down as the day went on.

This index reads a partition's keys once, when a batch first touches it, and then adds what the
committer appends. It holds 64-bit hashes (8 bytes a key), not the keys: a hash that matches
only says a key *may* be held, and the writer then confirms those few keys against the table.
A new key is never dropped for a hash collision; it costs one read. Matches happen on replays
after a crash (the keys are really there) and almost never otherwise.

The index is only right while its committer is the table's only writer, which the dataflows
guarantee. It remembers the table version it reflects, and is dropped when the table moved
without it (a compaction, a second writer): the next batch reads its partitions again. It keeps
the partitions touched most recently, so memory is bounded by a few days of keys, not the
table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

Partition = tuple[object, ...]
"""A partition's values, in the table's partition column order (``()`` when unpartitioned)."""

PARTITIONS_KEPT = 3
"""Partitions whose keys stay in memory: today, yesterday and one more for ``event_date``."""

COMPACT_AFTER_CHUNKS = 64
"""Chunks a partition gathers (one per append) before they are joined into one array."""


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

    def __len__(self) -> int:
        return sum(len(chunk) for chunks in self._chunks.values() for chunk in chunks)

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
        for partition in partitions:
            self._touch(partition, load)
        found: list[pa.Array] = []
        for partition in partitions:
            for chunk in self._chunks[partition]:
                found.append(chunk.filter(pc.is_in(chunk, value_set=hashes)))
        if not any(len(f) for f in found):
            return pa.array([False] * len(hashes), pa.bool_())
        return pc.is_in(hashes, value_set=pa.concat_arrays(found))

    def add(self, partition: Partition, hashes: pa.Array) -> None:
        """Record keys appended to ``partition`` (when its keys are held here)."""
        chunks = self._chunks.get(partition)
        if chunks is None or not len(hashes):
            return
        chunks.append(hashes)
        if len(chunks) > COMPACT_AFTER_CHUNKS:
            self._chunks[partition] = [pa.concat_arrays(chunks)]

    def _touch(
        self, partition: Partition, load: Callable[[Partition], Iterable[list[object]]]
    ) -> None:
        if partition in self._chunks:
            self._chunks.move_to_end(partition)
            return
        stored = [key_hashes(keys) for keys in load(partition)]
        self._chunks[partition] = [pa.concat_arrays(stored) if stored else key_hashes(())]
        while len(self._chunks) > self._kept:
            self._chunks.popitem(last=False)
