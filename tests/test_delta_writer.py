"""Delta writes are keyed merges: replays change nothing, nulls and older rows never win."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from hypothesis import given, settings
from hypothesis import strategies as st

from claimx_flow.delta.held_keys import RowPartitions
from claimx_flow.delta.tables import TableSpec
from claimx_flow.delta.writer import DeltaWriter, collapse_by_key

TS = pa.timestamp("us", tz="UTC")


PROJECTS = TableSpec(
    "projects",
    pa.schema(
        [
            ("project_id", pa.string()),
            ("status", pa.string()),
            ("policyholder_joined_at", TS),
            ("last_enriched_at", TS),
        ]
    ),
    keys=("project_id",),
    version_column="last_enriched_at",
)

EVENTS = TableSpec(
    "events",
    pa.schema([("event_id", pa.string()), ("event_date", pa.string()), ("n", pa.int64())]),
    keys=("event_id",),
    partition_by=("event_date",),
    write_mode="insert_if_absent",
)


def t(hour: int) -> datetime:
    return datetime(2026, 11, 1, hour, tzinfo=UTC)


def rows_of(path: Path) -> list[dict]:
    return sorted(DeltaTable(str(path)).to_pyarrow_table().to_pylist(), key=lambda r: str(r))


def test_insert_if_absent_is_idempotent(tmp_path: Path) -> None:
    writer = DeltaWriter(EVENTS, str(tmp_path / "events"))
    batch = [{"event_id": f"e{i}", "event_date": "2026-11-01", "n": i} for i in range(10)]
    first = writer.write(batch + batch[:3])
    assert first.inserted == 10
    again = writer.write(batch)
    assert again.inserted == 0
    changed = writer.write([{"event_id": "e1", "event_date": "2026-11-01", "n": 99}])
    assert changed.inserted == 0 and changed.updated == 0
    stored = rows_of(tmp_path / "events")
    assert len(stored) == 10
    assert {r["n"] for r in stored if r["event_id"] == "e1"} == {1}
    assert DeltaTable(str(tmp_path / "events")).metadata().partition_columns == ["event_date"]


@pytest.mark.parametrize("maintenance", ["merged", "optimized"])
def test_insert_if_absent_reads_files_a_merge_or_an_optimize_wrote(
    tmp_path: Path, maintenance: str
) -> None:
    """Tables written before insert-if-absent appended (a MERGE per batch), or compacted since,
    hold files whose statistics pyarrow binds as string_view: a pyarrow filter on the key then
    fails the scan ("no kernel matching input types (string, string_view)"), so the held keys
    are matched outside it. Every key stays once."""
    path = tmp_path / "events"
    writer = DeltaWriter(EVENTS, str(path))
    writer.write([{"event_id": f"e{i}", "event_date": "2026-11-01", "n": i} for i in range(5)])
    table = DeltaTable(str(path))
    if maintenance == "merged":
        source = pa.table(
            {
                "event_id": [f"e{i}" for i in range(5, 10)],
                "event_date": ["2026-11-01"] * 5,
                "n": list(range(5, 10)),
            },
            schema=EVENTS.schema,
        )
        table.merge(
            source, predicate="t.event_id = s.event_id", source_alias="s", target_alias="t"
        ).when_not_matched_insert_all().execute()
    else:
        writer.write(
            [{"event_id": f"e{i}", "event_date": "2026-11-01", "n": i} for i in range(5, 10)]
        )
        table.optimize.compact()
    again = writer.write(
        [{"event_id": f"e{i}", "event_date": "2026-11-01", "n": i} for i in range(8, 14)]
    )
    assert again.inserted == 4
    stored = rows_of(path)
    assert sorted(r["event_id"] for r in stored) == sorted(f"e{i}" for i in range(14))


def test_upsert_never_nulls_and_never_goes_back_in_time(tmp_path: Path) -> None:
    writer = DeltaWriter(PROJECTS, str(tmp_path / "projects"))
    writer.write([{"project_id": "p1", "status": "open", "last_enriched_at": t(10)}])
    # A partial update: only the policyholder column; status must survive.
    writer.write(
        [
            {
                "project_id": "p1",
                "status": None,
                "policyholder_joined_at": t(11),
                "last_enriched_at": t(11),
            }
        ]
    )
    # An older enrichment arriving late must not overwrite the newer one.
    writer.write([{"project_id": "p1", "status": "stale", "last_enriched_at": t(9)}])
    (row,) = rows_of(tmp_path / "projects")
    assert row["status"] == "open"
    assert row["policyholder_joined_at"] == t(11)
    assert row["last_enriched_at"] == t(11)
    # A newer full update does win, and replaying it changes nothing.
    newer = [{"project_id": "p1", "status": "closed", "last_enriched_at": t(12)}]
    writer.write(newer)
    writer.write(newer)
    (row,) = rows_of(tmp_path / "projects")
    assert (row["status"], row["policyholder_joined_at"]) == ("closed", t(11))


def test_collapse_folds_a_batch_oldest_to_newest() -> None:
    rows = [
        {"project_id": "p", "status": "new", "last_enriched_at": t(12)},
        {
            "project_id": "p",
            "status": "old",
            "policyholder_joined_at": t(1),
            "last_enriched_at": t(10),
        },
    ]
    (row,) = collapse_by_key(rows, ("project_id",), "last_enriched_at", "upsert")
    assert row == {
        "project_id": "p",
        "status": "new",
        "policyholder_joined_at": t(1),
        "last_enriched_at": t(12),
    }


def _first_row_per_key(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Insert-if-absent collapsing written plainly: the first row of each key, in key order."""
    kept: dict[object, dict[str, object]] = {}
    for row in rows:
        if row.get("event_id") is None:
            raise ValueError("row without its key")
        kept.setdefault(row["event_id"], dict(row))
    return list(kept.values())


@given(
    st.lists(
        st.fixed_dictionaries(
            {"event_id": st.sampled_from(["a", "b", "c", "d"]), "n": st.integers(0, 9)},
            optional={"event_date": st.sampled_from(["2024-01-01", "2024-01-02"])},
        ),
        max_size=30,
    )
)
def test_insert_if_absent_keeps_the_first_row_of_each_key(rows: list[dict[str, object]]) -> None:
    collapsed = collapse_by_key(rows, EVENTS.keys, None, "insert_if_absent")
    assert collapsed == _first_row_per_key(rows)
    assert all(c is not r for c in collapsed for r in rows)  # copies: the caller's rows stay


def test_insert_if_absent_refuses_a_row_without_its_key() -> None:
    with pytest.raises(ValueError, match="without its key"):
        collapse_by_key([{"event_id": "a"}, {"n": 1}], EVENTS.keys, None, "insert_if_absent")


def _events(date: str, ids: range) -> list[dict]:
    return [{"event_id": f"e{i}", "event_date": date, "n": i} for i in ids]


def test_insert_if_absent_sees_keys_another_writer_appended(tmp_path: Path) -> None:
    """The held-key index follows the table version: a second writer's append (a restarted
    twin, a replay from another process) is seen, not hidden behind a stale index."""
    ours = DeltaWriter(EVENTS, str(tmp_path / "events"))
    theirs = DeltaWriter(EVENTS, str(tmp_path / "events"))
    assert ours.write(_events("2026-11-01", range(5))).inserted == 5
    assert theirs.write(_events("2026-11-01", range(5, 10))).inserted == 5
    assert ours.write(_events("2026-11-01", range(12))).inserted == 2
    assert len(rows_of(tmp_path / "events")) == 12


def test_insert_if_absent_confirms_a_hash_match_against_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hash that matches only says a key may be held: new keys whose hashes collide with
    stored ones are still appended."""
    import claimx_flow.delta.held_keys as held_keys
    import claimx_flow.delta.writer as writer_module

    def colliding(keys):
        return pa.array([7 for _ in keys], pa.int64())

    monkeypatch.setattr(held_keys, "key_hashes", colliding)
    monkeypatch.setattr(writer_module, "key_hashes", colliding)
    writer = DeltaWriter(EVENTS, str(tmp_path / "events"))
    assert writer.write(_events("2026-11-01", range(5))).inserted == 5
    assert writer.write(_events("2026-11-01", range(3, 8))).inserted == 3
    assert sorted(r["n"] for r in rows_of(tmp_path / "events")) == list(range(8))


def test_insert_if_absent_rereads_a_partition_it_let_go(tmp_path: Path) -> None:
    """Memory holds the keys of the partitions touched last; an older day comes back from the
    table when a late event touches it again."""
    writer = DeltaWriter(EVENTS, str(tmp_path / "events"))
    days = [f"2026-11-0{d}" for d in range(1, 6)]
    for day in days:
        assert writer.write(_events(day, range(3))).inserted == 3
    assert writer._held.partitions() == [(d,) for d in days[-3:]]
    assert writer.write(_events(days[0], range(5))).inserted == 2
    assert writer.write(_events(days[-1], range(3))).inserted == 0
    assert len(rows_of(tmp_path / "events")) == 17


def test_insert_if_absent_after_a_restart_appends_nothing_twice(tmp_path: Path) -> None:
    DeltaWriter(EVENTS, str(tmp_path / "events")).write(_events("2026-11-01", range(6)))
    restarted = DeltaWriter(EVENTS, str(tmp_path / "events"))
    assert restarted.write(_events("2026-11-01", range(4, 9))).inserted == 3
    assert len(rows_of(tmp_path / "events")) == 9


CONTACTS = TableSpec(
    "contacts",
    pa.schema(
        [
            ("project_id", pa.string()),
            ("email", pa.string()),
            ("status", pa.string()),
            ("last_enriched_at", TS),
        ]
    ),
    keys=("project_id", "email"),
    version_column="last_enriched_at",
)

# Keys a SQL literal could misread, beside plain ones: a MERGE that failed to match a stored
# row would insert it a second time.
awkward_keys = st.sampled_from(["p1", "p2", "42", "a@b.c", "o'neil", "back\\slash", "ü", "a b"])
writes = st.lists(
    st.lists(
        st.tuples(awkward_keys, awkward_keys, st.none() | st.sampled_from(["open", "closed"])),
        min_size=1,
        max_size=6,
        unique_by=lambda row: (row[0], row[1]),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(writes=writes, restarts=st.lists(st.booleans(), min_size=4, max_size=4))
def test_upsert_keeps_one_row_per_key_with_the_latest_values(
    tmp_path_factory: pytest.TempPathFactory, writes: list, restarts: list[bool]
) -> None:
    """Whatever the keys, the order of writes and the writers doing them (a restart builds its
    index of stored keys from the table), an upsert table holds one row per key: its last
    non-null values. New keys are appended and held ones MERGEd; both must agree."""
    path = str(tmp_path_factory.mktemp("contacts") / "contacts")
    writer = DeltaWriter(CONTACTS, path)
    expected: dict[tuple[str, str], dict] = {}
    for number, (batch, restart) in enumerate(zip(writes, restarts, strict=False)):
        if restart:
            writer = DeltaWriter(CONTACTS, path)
        rows = [
            {"project_id": p, "email": e, "status": s, "last_enriched_at": t(number)}
            for p, e, s in batch
        ]
        outcome = writer.write(rows)
        new = [r for r in rows if (r["project_id"], r["email"]) not in expected]
        assert (outcome.inserted, outcome.updated) == (len(new), len(rows) - len(new))
        for row in rows:
            held = expected.setdefault((row["project_id"], row["email"]), {})
            held.update({k: v for k, v in row.items() if v is not None or k not in held})
    stored = DeltaTable(path).to_pyarrow_table().to_pylist()
    assert len(stored) == len(expected)
    assert {(r["project_id"], r["email"]): r for r in stored} == expected


def test_upsert_of_a_colliding_new_key_still_inserts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import claimx_flow.delta.held_keys as held_keys
    import claimx_flow.delta.writer as writer_module

    def colliding(keys):
        return pa.array([7 for _ in keys], pa.int64())

    monkeypatch.setattr(held_keys, "key_hashes", colliding)
    monkeypatch.setattr(writer_module, "key_hashes", colliding)
    writer = DeltaWriter(PROJECTS, str(tmp_path / "projects"))
    writer.write([{"project_id": "p1", "status": "open", "last_enriched_at": t(1)}])
    outcome = writer.write(
        [
            {"project_id": "p1", "status": "closed", "last_enriched_at": t(2)},
            {"project_id": "p2", "status": "open", "last_enriched_at": t(2)},
        ]
    )
    assert (outcome.inserted, outcome.updated) == (1, 1)
    assert {(r["project_id"], r["status"]) for r in rows_of(tmp_path / "projects")} == {
        ("p1", "closed"),
        ("p2", "open"),
    }


def test_insert_if_absent_after_a_mixed_replay_keeps_writing(tmp_path: Path) -> None:
    """The first batch replayed after a crash mixes stored and new ids; the index must take
    what it appended and go on answering, for the next match and past its chunk limit."""
    writer = DeltaWriter(EVENTS, str(tmp_path / "events"))
    assert writer.write(_events("2026-11-01", range(3))).inserted == 3
    assert writer.write(_events("2026-11-01", range(6))).inserted == 3
    assert writer.write(_events("2026-11-01", range(4, 9))).inserted == 3
    for start in range(9, 9 + 70):
        assert writer.write(_events("2026-11-01", range(start - 1, start + 1))).inserted == 1
    assert writer.write(_events("2026-11-01", range(80))).inserted == 1
    assert len(rows_of(tmp_path / "events")) == 80


def test_a_batch_over_more_days_than_are_kept(tmp_path: Path) -> None:
    """A backfill batch may span many event dates: all of them are checked, none evicted
    while in use."""
    writer = DeltaWriter(EVENTS, str(tmp_path / "events"))
    days = [f"2026-11-0{d}" for d in range(1, 7)]
    batch = [row for n, day in enumerate(days) for row in _events(day, range(2 * n, 2 * n + 2))]
    assert writer.write(batch).inserted == len(batch)
    assert writer.write(batch).inserted == 0
    assert len(rows_of(tmp_path / "events")) == len(batch)


PARTITIONED_UPSERT = TableSpec(
    "partitioned",
    pa.schema([("k", pa.string()), ("day", pa.string()), ("n", pa.int64())]),
    keys=("k",),
    partition_by=("day",),
)


def test_a_partitioned_upsert_remembers_what_its_merge_inserted(tmp_path: Path) -> None:
    """A key held in one partition sends its row in another through the MERGE, which inserts
    it there; that partition's index must then know it, or a replay appends it again."""
    writer = DeltaWriter(PARTITIONED_UPSERT, str(tmp_path / "p"))
    writer.write([{"k": "x", "day": "d1", "n": 1}])
    writer.write([{"k": "x", "day": "d1", "n": 1}, {"k": "x2", "day": "d2", "n": 2}])
    writer.write([{"k": "x", "day": "d2", "n": 3}, {"k": "y", "day": "d1", "n": 4}])
    writer.write([{"k": "x", "day": "d2", "n": 3}])
    stored = sorted((r["k"], r["day"]) for r in rows_of(tmp_path / "p"))
    assert stored == [("x", "d1"), ("x", "d2"), ("x2", "d2"), ("y", "d1")]


def test_a_twin_that_read_an_older_version_cannot_append_a_key_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two committers of one table are a design error, but a restarted twin can overlap its
    predecessor: each commit is fenced by a Delta application transaction, so the one that
    read an older version is refused, retries on the table as it is, and MERGEs the key."""
    path = str(tmp_path / "projects")
    ours = DeltaWriter(PROJECTS, path)
    ours.write([{"project_id": "p0", "status": "open", "last_enriched_at": t(1)}])
    DeltaWriter(PROJECTS, path).write(
        [{"project_id": "p1", "status": "open", "last_enriched_at": t(2)}]
    )
    stale = ours._table
    assert stale is not None
    # The stale read stands in for the race (two real committers cannot be timed to read the
    # same version); the table, the commits and Delta's refusal are real.
    monkeypatch.setattr(stale, "update_incremental", lambda: None)
    outcome = ours.write([{"project_id": "p1", "status": "closed", "last_enriched_at": t(3)}])
    assert (outcome.inserted, outcome.updated) == (0, 1)
    assert {(r["project_id"], r["status"]) for r in rows_of(tmp_path / "projects")} == {
        ("p0", "open"),
        ("p1", "closed"),
    }


PARTITION_VALUES = {
    pa.string(): ["2026-11-01", "2026-11-02", "x'y", "é"],
    pa.large_string(): ["2026-11-01", "x'y"],
    pa.date32(): [date(2026, 11, 1), date(2026, 11, 2), date(2026, 12, 31)],
    pa.float64(): [0.0, -0.0, 1.5],
}


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(PARTITION_VALUES)),
    data=st.data(),
    columns=st.sampled_from([(), ("a",), ("a", "b")]),
    chunk=st.integers(1, 7),
)
def test_row_partitions_group_rows_as_a_row_by_row_reading_would(
    kind: pa.DataType, data: st.DataObject, columns: tuple[str, ...], chunk: int
) -> None:
    """The index learns each written key in its row's partition, whatever the chunking, nulls,
    column type or count: the same grouping, and the same Python values, as reading each row's
    partition values in turn."""
    value = st.one_of(st.none(), st.sampled_from(PARTITION_VALUES[kind]))
    rows = data.draw(st.lists(st.tuples(value, value), max_size=30))
    whole = pa.table(
        {"a": pa.array([r[0] for r in rows], kind), "b": pa.array([r[1] for r in rows], kind)}
    )
    chunked = pa.concat_tables(
        [whole.slice(i, chunk) for i in range(0, len(rows), chunk)] or [whole]
    )
    each = [tuple(row[name] for name in columns) for row in whole.to_pylist()]
    partitions = RowPartitions.of(chunked, columns)
    assert partitions.distinct == list(dict.fromkeys(each))
    kinds = [tuple(map(type, partition)) for partition in partitions.distinct]
    assert kinds == [tuple(map(type, partition)) for partition in dict.fromkeys(each)]
    positions = pa.array(range(len(rows)), pa.int64())
    for position, partition in enumerate(partitions.distinct):
        chosen = partitions.select(position, positions).to_pylist()
        assert chosen == [i for i, p in enumerate(each) if p == partition]
