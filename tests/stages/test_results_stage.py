"""Result folding: repeats change nothing, a late success replaces a failure, windows roll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulLogic

from claimx_flow.models import CachedDownload, DownloadTask, UploadResult
from claimx_flow.stages.results import WINDOW_MINUTES, ProjectTally, Totals
from dataflows.results import Tally

T0 = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)


def result(
    media_id: str, status: str = "completed", at: datetime = T0, size: int = 100
) -> UploadResult:
    return UploadResult(
        media_id=media_id,
        project_id="p1",
        onelake_path=f"file:///x/{media_id}",
        bytes=size,
        sha256="0" * 64,
        status=status,  # type: ignore[arg-type]
        error="boom" if status == "failed" else None,
        source_event_id="e",
        finished_at=at,
    )


def fold(results: list[UploadResult]) -> Totals:
    tally, totals = ProjectTally(), Totals()
    for r in results:
        delta = tally.apply(r)
        if delta is not None:
            totals.add(delta)
    return totals


def test_repeated_results_are_counted_once() -> None:
    totals = fold([result("a"), result("b"), result("a"), result("b")])
    assert (totals.completed, totals.failed, totals.bytes, totals.projects) == (2, 0, 200, 1)


def test_a_success_after_a_failure_counts_once_as_completed() -> None:
    totals = fold([result("a", "failed"), result("a", "failed"), result("a")])
    assert (totals.completed, totals.failed) == (1, 0)


def test_windows_keep_the_last_hour_per_minute() -> None:
    results = [result(str(i), at=T0 + timedelta(minutes=i)) for i in range(WINDOW_MINUTES + 10)]
    totals = fold(results)
    assert len(totals.minutes) == WINDOW_MINUTES
    assert totals.completed == WINDOW_MINUTES + 10
    assert "completed" in totals.summary()


def test_a_result_from_a_clock_far_ahead_counts_in_the_minute_it_was_seen() -> None:
    """Found in audit: one result finished in 9999 was the newest minute, and so the minute
    every later summary reported, for good."""
    tally, totals = ProjectTally(), Totals()
    seen = T0 + timedelta(minutes=5)
    for r in (result("m1", at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)), result("m2", at=seen)):
        delta = tally.apply(r, seen)
        assert delta is not None
        totals.add(delta)
    assert list(totals.minutes) == [seen.replace(second=0)]
    assert f"last minute ({seen:%H:%M} UTC): 2 completed" in totals.summary()


def test_a_quiet_project_is_forgotten_after_the_idle_time() -> None:
    """The per-project state is bounded: a tally asks to be woken ``idle`` after its last
    result and is then discarded."""
    tally = Tally(None, timedelta(hours=1))
    deltas, _ = tally.on_item(result("a"))
    assert len(deltas) == 1
    seen = tally.state.last_seen
    assert seen is not None and tally.notify_at() == seen + timedelta(hours=1)
    assert tally.on_notify() == ([], StatefulLogic.DISCARD)


def test_a_tally_snapshot_does_not_change_with_later_results() -> None:
    """Bytewax may serialise a snapshot after the step goes on (its contract: a snapshot must
    not change once taken). One that was the live tally would take later results into the
    epoch before them, and a resume would skip those as repeats."""
    tally = Tally(None, timedelta(hours=1))
    tally.on_item(result("a"))
    taken = tally.snapshot()
    tally.on_item(result("b"))
    tally.on_item(result("c", "failed"))
    assert taken.completed == {"a"} and taken.failed == set()
    assert Tally(taken, timedelta(hours=1)).on_item(result("b"))[0]  # counted on a resume


def test_the_summary_gives_the_success_and_failure_rates() -> None:
    totals = fold([result("a"), result("b"), result("c"), result("d", "failed")])
    assert "3 completed, 1 failed (75.0% success, 25.0% failed)" in totals.summary()
    assert "last minute (10:00 UTC): 3 completed, 1 failed (75.0% success" in totals.summary()


def test_failed_results_of_both_stages_are_counted() -> None:
    """The download stage's failed result names no file (no path, 0 bytes, no sha256); the
    upload stage's keeps the downloaded file's size and sha256. Both count as failed, neither
    adds bytes."""
    task = DownloadTask(
        media_id="m1",
        project_id="p1",
        download_url="https://x/y",
        file_name="a.jpg",
        file_type="jpg",
        source_event_id="e1",
    )
    from_download = UploadResult.failed(task, None, "HTTP 404 from media host", finished_at=T0)
    cached = CachedDownload.from_task(
        task.model_copy(update={"media_id": "m2"}),
        local_path="/c/m2.bin",
        size=10,
        sha256="0" * 64,
        content_type="image/jpeg",
    )
    from_upload = UploadResult.failed(cached, None, "denied", finished_at=T0)
    nothing_stored = (from_download.bytes, from_download.sha256, from_download.onelake_path)
    assert nothing_stored == (0, None, None)
    assert (from_upload.bytes, from_upload.sha256) == (10, "0" * 64)
    totals = fold([from_download, from_upload, result("c")])
    assert (totals.completed, totals.failed, totals.bytes) == (1, 2, 100)
    # What the results stage reads back off Kafka is the same result.
    assert UploadResult.from_json(from_download.to_json()) == from_download


def test_a_failure_replaced_later_stays_in_the_minute_it_failed() -> None:
    """A DLQ replay that succeeds a minute later: the totals count the file once, completed;
    the minute of the failure keeps its failure and the minute of the success counts the
    success, and no minute ever shows a negative count."""
    later = T0 + timedelta(minutes=3)
    totals = fold([result("a", "failed"), result("b"), result("a", at=later)])
    assert (totals.completed, totals.failed) == (2, 0)
    minute = T0.replace(second=0)
    assert totals.minutes[minute] == (1, 1, 100)
    assert totals.minutes[later.replace(second=0)] == (1, 0, 100)
    assert "(10:03 UTC): 1 completed, 0 failed (100.0% success, 0.0% failed)" in totals.summary()


def test_a_result_of_more_bytes_than_a_long_holds_is_skipped_not_summed() -> None:
    """``bytes`` past Kafka's and Delta's ``long`` is not a size: the result is unreadable and
    skipped (results are a report), never a number that stops the stage's metrics."""
    from claimx_flow.kafka.records import KafkaRecord
    from dataflows.results import read

    good = result("m1").to_json()
    for size in (2**63, 10**400):
        value = good.replace(b'"bytes":100', b'"bytes":' + str(size).encode())
        assert value != good
        assert read(KafkaRecord("claimx.downloads.results", 0, 0, None, b"5", value)) is None
    assert read(KafkaRecord("claimx.downloads.results", 0, 1, None, b"5", good)) is not None


def test_a_result_whose_headers_alone_were_unreadable_is_still_counted() -> None:
    from claimx_flow.kafka.records import UNREADABLE_HEADERS, KafkaRecord
    from dataflows.results import read

    good = result("m2").to_json()
    topic = "claimx.downloads.results"
    kept = KafkaRecord(topic, 0, 2, None, b"m2", good, (), UNREADABLE_HEADERS)
    assert read(kept) is not None
    lost = KafkaRecord(topic, 0, 3, None, b"m2", None, (), "Broker: Corrupt message")
    assert read(lost) is None
