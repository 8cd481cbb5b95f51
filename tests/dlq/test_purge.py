"""``claimx dlq purge``: gone for every reader, only when confirmed, and only what was asked."""

from __future__ import annotations

import json

from claimx_flow.dlq.purge import execute_purge, plan_purge
from claimx_flow.dlq.queues import DlqName
from tests.dlq.helpers import (
    Pipeline,
    claimx,
    failure,
    hour,
    put_letters,
    read_all,
    watermarks,
    zulu,
)


def _fill(pipeline: Pipeline, days: list[int]) -> None:
    origin = pipeline["enrichment.pending"]
    infos = [failure(f"evt_{d}", origin_topic=origin) for d in days]
    put_letters(pipeline, "enrichment.dlq", infos, timestamps=[hour(d) for d in days])


def test_purge_with_yes_removes_every_record_for_every_reader(pipeline: Pipeline) -> None:
    _fill(pipeline, [1, 2, 3, 4])

    result = claimx(pipeline, "purge", "enrichment", "--yes")

    assert result.exit_code == 0, result.output
    assert "removed 4 record(s)" in result.output
    assert all(
        low == high for low, high in watermarks(pipeline.bootstrap, pipeline["enrichment.dlq"])
    )
    assert read_all(pipeline.bootstrap, pipeline["enrichment.dlq"]) == []  # a brand-new reader
    listed = json.loads(claimx(pipeline, "list", "--json").output)["dlqs"][1]
    assert listed["messages"] == 0
    again = claimx(pipeline, "purge", "enrichment", "--yes")
    assert again.exit_code == 1 and "nothing to purge" in again.output


def test_purge_refuses_without_a_terminal_and_without_yes(pipeline: Pipeline) -> None:
    _fill(pipeline, [1, 2])

    result = claimx(pipeline, "purge", "enrichment")  # CliRunner's stdin is not a terminal

    assert result.exit_code == 2
    assert "refusing to purge" in result.output and "--yes" in result.output
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])) == 2


def test_purge_before_removes_only_older_records(pipeline: Pipeline) -> None:
    _fill(pipeline, [1, 2, 3, 4, 5, 6])

    result = claimx(pipeline, "purge", "enrichment", "--before", zulu(hour(3)), "--yes", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (document["removed"], document["before"]) == (2, hour(3).isoformat())
    left = read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])
    assert sorted(json.loads(r.value or b"")["event_id"] for r in left) == [
        "evt_3",
        "evt_4",
        "evt_5",
        "evt_6",
    ]


def test_purge_dry_run_shows_the_plan_and_removes_nothing(pipeline: Pipeline) -> None:
    _fill(pipeline, [1, 2, 3])

    table = claimx(pipeline, "purge", "enrichment", "--dry-run")
    document = json.loads(claimx(pipeline, "purge", "enrichment", "--dry-run", "--json").output)

    assert table.exit_code == 0, table.output
    assert "would remove" in table.output and "total" in table.output
    assert document["dry_run"] is True
    assert (document["to_remove"], document["removed"]) == (3, 0)
    assert sum(p["to_remove"] for p in document["partitions"]) == 3
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])) == 3
    nothing_before = claimx(pipeline, "purge", "enrichment", "--before", "2020-01-01", "--yes")
    assert nothing_before.exit_code == 1
    # Before 1970: -1 ms, which Kafka reads as "the latest offset", would cut at the end.
    for instant in ("1969-12-31T23:59:59.999Z", "1900-01-01"):
        before_kafka = claimx(pipeline, "purge", "enrichment", "--before", instant, "--yes")
        assert before_kafka.exit_code == 1, before_kafka.output
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])) == 3


def test_records_arriving_after_the_plan_are_kept(pipeline: Pipeline) -> None:
    _fill(pipeline, [1, 2])
    plan = plan_purge(pipeline.settings, DlqName.ENRICHMENT)
    _fill(pipeline, [3])

    assert execute_purge(pipeline.settings, plan) == 2

    [kept] = read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])
    assert json.loads(kept.value or b"")["event_id"] == "evt_3"


def test_replay_after_a_purge_starts_at_what_is_left(pipeline: Pipeline) -> None:
    _fill(pipeline, [1, 2])
    assert claimx(pipeline, "purge", "enrichment", "--yes").exit_code == 0
    _fill(pipeline, [3])
    result = json.loads(claimx(pipeline, "replay", "enrichment", "--json").output)
    assert result["replayed"] == 1
