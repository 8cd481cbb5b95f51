"""Result folding: repeats change nothing, a late success replaces a failure, windows roll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bytewax.operators import StatefulLogic

from claimx_flow.models import UploadResult
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


def test_a_quiet_project_is_forgotten_after_the_idle_time() -> None:
    """The per-project state is bounded: a tally asks to be woken ``idle`` after its last
    result and is then discarded."""
    tally = Tally(None, timedelta(hours=1))
    deltas, _ = tally.on_item(result("a"))
    assert len(deltas) == 1
    seen = tally.state.last_seen
    assert seen is not None and tally.notify_at() == seen + timedelta(hours=1)
    assert tally.on_notify() == ([], StatefulLogic.DISCARD)


def test_the_summary_gives_the_success_rate() -> None:
    totals = fold([result("a"), result("b"), result("c"), result("d", "failed")])
    assert "3 completed, 1 failed (75.0% success)" in totals.summary()
