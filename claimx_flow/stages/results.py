"""Results: upload results folded into running totals, per-minute windows and per-project
counts, published as metrics and a periodic summary line.

Results arrive at least once (replays), so each project's tally remembers which media it has
counted: a repeated result changes nothing, and the totals equal ``claimx_attachments``. A
project's tally is dropped once the project has been quiet for
``CLAIMX_RESULTS_PROJECT_IDLE_SECONDS``, which bounds the stage's memory by the projects active
in that time (a replay older than that would be counted again, and a project that has a result
again after such a pause counts again in ``projects``).

Failed results come from the download and upload stages when a media file goes to the download
DLQ; a later success of the same file (a DLQ replay) replaces its failure in the totals. The
per-minute windows count what happened in each minute: a failure stays in the minute it was
seen, and the success that replaces it counts in its own minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from claimx_flow.models import UploadResult
from claimx_flow.runtime.metrics import PROJECTS_WITH_FILES, RESULT_BYTES, RESULTS

WINDOW_MINUTES = 60


@dataclass(frozen=True)
class ResultDelta:
    """What one result adds to the totals (nothing, for a repeat)."""

    project_id: str
    completed: int
    failed: int
    bytes: int
    minute: datetime
    new_project: bool


@dataclass
class ProjectTally:
    """One project's counted media, so repeats are recognised."""

    completed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    bytes: int = 0
    last_seen: datetime | None = None

    def copy(self) -> ProjectTally:
        return ProjectTally(set(self.completed), set(self.failed), self.bytes, self.last_seen)

    def apply(self, result: UploadResult, now: datetime | None = None) -> ResultDelta | None:
        self.last_seen = now
        return self._counted(result, now)

    def _counted(self, result: UploadResult, now: datetime | None) -> ResultDelta | None:
        new_project = not self.completed and not self.failed
        # Never after it was seen: the windows keep the newest minutes, so one result from a
        # clock far ahead (9999-12-31) would have been the summary's last minute for good.
        finished = min(result.finished_at, now) if now is not None else result.finished_at
        minute = finished.replace(second=0, microsecond=0)
        if result.status == "completed":
            if result.media_id in self.completed:
                return None
            self.completed.add(result.media_id)
            # A file that failed before and now succeeded counts once, as completed.
            was_failed = result.media_id in self.failed
            self.failed.discard(result.media_id)
            self.bytes += result.bytes
            return ResultDelta(
                result.project_id, 1, -1 if was_failed else 0, result.bytes, minute, new_project
            )
        if result.media_id in self.failed or result.media_id in self.completed:
            return None
        self.failed.add(result.media_id)
        return ResultDelta(result.project_id, 0, 1, 0, minute, new_project)


@dataclass
class Totals:
    """Running totals and the last hour of per-minute windows, across every project."""

    completed: int = 0
    failed: int = 0
    bytes: int = 0
    projects: int = 0
    minutes: dict[datetime, tuple[int, int, int]] = field(default_factory=dict)

    def add(self, delta: ResultDelta) -> None:
        self.completed += delta.completed
        self.failed += delta.failed
        self.bytes += delta.bytes
        self.projects += int(delta.new_project)
        done, failed, size = self.minutes.get(delta.minute, (0, 0, 0))
        self.minutes[delta.minute] = (
            done + delta.completed,
            failed + max(delta.failed, 0),  # a replaced failure stays in the minute it failed
            size + delta.bytes,
        )
        for old in sorted(self.minutes)[:-WINDOW_MINUTES]:
            del self.minutes[old]
        publish(delta)

    def summary(self) -> str:
        last = max(self.minutes) if self.minutes else None
        window = self.minutes.get(last, (0, 0, 0)) if last else (0, 0, 0)
        return (
            f"results: {self.completed} completed, {self.failed} failed "
            f"({rates(self.completed, self.failed)}), "
            f"{self.bytes} bytes, {self.projects} projects; last minute "
            f"({last:%H:%M} UTC): {window[0]} completed, {window[1]} failed "
            f"({rates(window[0], window[1])}), {window[2]} bytes"
            if last
            else "results: none yet"
        )

    def restore_metrics(self) -> None:
        """After a resume, put the totals kept in recovery back into this process's metrics,
        so the running counts go on from where they were instead of from zero."""
        if self.completed:
            RESULTS.labels(status="completed").inc(self.completed)
            RESULT_BYTES.inc(self.bytes)
        if self.failed:
            RESULTS.labels(status="failed").inc(self.failed)
        PROJECTS_WITH_FILES.set(self.projects)


def success_rate(completed: int, failed: int) -> str:
    total = completed + failed
    return f"{completed / total:.1%}" if total else "n/a"


def failure_rate(completed: int, failed: int) -> str:
    total = completed + failed
    return f"{failed / total:.1%}" if total else "n/a"


def rates(completed: int, failed: int) -> str:
    """``97.5% success, 2.5% failed``: the runbook's success and failure rates."""
    return f"{success_rate(completed, failed)} success, {failure_rate(completed, failed)} failed"


def publish(delta: ResultDelta) -> None:
    if delta.completed:
        RESULTS.labels(status="completed").inc(delta.completed)
        RESULT_BYTES.inc(delta.bytes)
    if delta.failed > 0:
        RESULTS.labels(status="failed").inc(delta.failed)
    if delta.new_project:
        PROJECTS_WITH_FILES.inc()
