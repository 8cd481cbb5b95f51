"""Rows routed by table reach one committer per table: no conflicts, no duplicates."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import bytewax.operators as op
import pyarrow as pa
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main
from deltalake import DeltaTable

from claimx_flow.delta.tables import TableSpec
from claimx_flow.delta.writer import DeltaWriter, WriteOutcome
from operators.delta_sink import DeltaTablesSink

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

    def record(outcome: WriteOutcome) -> None:
        committers[outcome.table].add(threading.get_ident())

    writers = {
        name: partial(DeltaWriter, spec, str(tmp_path / name)) for name, spec in TABLES.items()
    }
    flow = Dataflow("delta-sink")
    stream = op.input("in", flow, TestingSource(rows + rows[::-1], batch_size=50))
    op.output("tables", stream, DeltaTablesSink(writers, on_write=record))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    for name in TABLES:
        stored = DeltaTable(str(tmp_path / name)).to_pyarrow_table().to_pylist()
        assert sorted(r["id"] for r in stored) == sorted(f"{name}-{i}" for i in range(200))
        assert len(committers[name]) == 1
