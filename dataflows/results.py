"""results: claimx.downloads.results → per-project tallies → totals, per-minute windows,
metrics and a periodic summary line.

    python -m bytewax.run dataflows.results
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import MalformedMessageError, UploadResult
from claimx_flow.runtime.logs import at
from claimx_flow.stages.results import ProjectTally, ResultDelta, Totals
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_input
from operators.logging_sink import LogSink

log = logging.getLogger("claimx.results")
STAGE = STAGES["results"]


def read(record: KafkaRecord) -> UploadResult | None:
    """The result in ``record``; one whose value is lost is skipped (results are a report),
    one whose headers alone could not be read is counted all the same."""
    if record.value is None and record.error is not None:
        log.warning(
            "%s: unreadable result skipped: %s", record.position, record.error, extra=at(record)
        )
        return None
    try:
        return UploadResult.from_json(record.value)
    except MalformedMessageError as exc:  # nothing downstream to lose: results are a report
        log.warning(
            "%s: unreadable result skipped: %s", record.position, exc.reason, extra=at(record)
        )
        return None


class Tally(StatefulLogic[UploadResult, ResultDelta, ProjectTally]):
    """One project's counted media; forgotten once the project has been quiet for ``idle``."""

    def __init__(self, resume: ProjectTally | None, idle: timedelta) -> None:
        self.state = resume or ProjectTally()
        self.idle = idle

    def on_item(self, value: UploadResult) -> tuple[list[ResultDelta], bool]:
        delta = self.state.apply(value, datetime.now(UTC))
        return ([delta] if delta else []), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[ResultDelta], bool]:
        return [], StatefulLogic.DISCARD

    def notify_at(self) -> datetime | None:
        seen = self.state.last_seen
        return seen + self.idle if seen is not None else None

    def snapshot(self) -> ProjectTally:
        """A copy: Bytewax requires a snapshot not to change after it is taken (it may
        serialise it later), and ``state`` goes on counting."""
        return self.state.copy()


class Summary(StatefulLogic[ResultDelta, str, Totals]):
    """Totals across every project; a summary line every ``every``."""

    def __init__(self, resume: Totals | None, every: timedelta) -> None:
        self.totals = resume or Totals()
        self.totals.restore_metrics()
        self.every = every
        self.next_at = datetime.now(UTC) + every

    def on_item(self, value: ResultDelta) -> tuple[list[str], bool]:
        self.totals.add(value)
        return [], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[str], bool]:
        self.next_at = datetime.now(UTC) + self.every
        return [self.totals.summary()], StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[str], bool]:
        return [self.totals.summary()], StatefulLogic.RETAIN

    def notify_at(self) -> datetime:
        return self.next_at

    def snapshot(self) -> Totals:
        return Totals(
            self.totals.completed,
            self.totals.failed,
            self.totals.bytes,
            self.totals.projects,
            dict(self.totals.minutes),
        )


def build(settings: Settings) -> Dataflow:
    every = timedelta(seconds=settings.claimx_results_summary_seconds)
    idle = timedelta(seconds=settings.claimx_results_project_idle_seconds)
    flow = Dataflow(STAGE.app)
    records = op.input("results", flow, kafka_input(settings, STAGE))
    results = op.filter_map("read", records, read)
    by_project = op.key_on("by-project", results, lambda r: r.project_id)
    deltas = op.stateful("tally", by_project, lambda resume: Tally(resume, idle))
    everything = op.key_on("all", op.map("unkey", deltas, lambda kv: kv[1]), lambda _: "all")
    totals = op.stateful("totals", everything, lambda resume: Summary(resume, every))
    op.output("summary", op.map("line", totals, lambda kv: kv[1]), LogSink(log))
    return flow


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
