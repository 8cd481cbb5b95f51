"""Items routed by name reach one committer per name: Delta tables without conflicts or
duplicates."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pyarrow as pa
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main
from deltalake import DeltaTable

from claimx_flow.delta.tables import TableSpec
from claimx_flow.delta.writer import DeltaWriter
from operators.commit_sink import CommitSink

TABLES = {
    name: TableSpec(
        name,
        pa.schema([("id", pa.string()), ("n", pa.int64())]),
        keys=("id",),
        write_mode="insert_if_absent",
    )
    for name in ("alpha", "beta", "gamma")
}


@pytest.mark.parametrize("workers", [1, 2])
def test_each_table_has_one_committer(tmp_path: Path, workers: int) -> None:
    # Every row appears twice, on different workers' input partitions, as a replay would.
    rows = [(name, {"id": f"{name}-{i}", "n": i}) for name in TABLES for i in range(200)]
    committers: dict[str, set[int]] = {name: set() for name in TABLES}

    @dataclass
    class Table:
        writer: DeltaWriter

        def commit(self, items: list[Mapping[str, Any]]) -> None:
            committers[self.writer.spec.name].add(threading.get_ident())
            self.writer.write(items)

        def close(self) -> None:
            pass

    def table(name: str) -> Table:
        return Table(DeltaWriter(TABLES[name], str(tmp_path / name)))

    flow = Dataflow("commit-sink")
    stream = op.input("in", flow, TestingSource(rows + rows[::-1], batch_size=50))
    op.output("tables", stream, CommitSink({name: (lambda n=name: table(n)) for name in TABLES}))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    for name in TABLES:
        stored = DeltaTable(str(tmp_path / name)).to_pyarrow_table().to_pylist()
        assert sorted(r["id"] for r in stored) == sorted(f"{name}-{i}" for i in range(200))
        assert len(committers[name]) == 1
