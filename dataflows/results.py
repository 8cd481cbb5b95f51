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

from claimx_flow.config import load_settings
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import MalformedMessageError, UploadResult
from claimx_flow.stages.results import ProjectTally, ResultDelta, Totals
from operators.kafka import KafkaInput
from operators.logging_sink import LogSink
from operators.runtime import setup_process

log = logging.getLogger("claimx.results")

settings = load_settings()
setup_process("results", settings)
SUMMARY_EVERY = timedelta(seconds=settings.claimx_results_summary_seconds)


def read(record: KafkaRecord) -> UploadResult | None:
    try:
        return UploadResult.from_json(record.value)
    except MalformedMessageError as exc:  # nothing downstream to lose: results are a report
        log.warning("%s: unreadable result skipped: %s", record.position, exc.reason)
        return None


def tally(
    state: ProjectTally | None, result: UploadResult
) -> tuple[ProjectTally, ResultDelta | None]:
    state = state or ProjectTally()
    return state, state.apply(result)


class Summary(StatefulLogic[ResultDelta, str, Totals]):
    """Totals across every project; a summary line every ``SUMMARY_EVERY``."""

    def __init__(self, resume: Totals | None) -> None:
        self.totals = resume or Totals()
        self.next_at = datetime.now(UTC) + SUMMARY_EVERY

    def on_item(self, value: ResultDelta) -> tuple[list[str], bool]:
        self.totals.add(value)
        return [], StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[str], bool]:
        self.next_at = datetime.now(UTC) + SUMMARY_EVERY
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


flow = Dataflow("claimx-results")
records = op.input(
    "results",
    flow,
    KafkaInput(settings, "result-processor", [settings.claimx_downloads_results_topic]),
)
results = op.filter_map("read", records, read)
per_project = op.stateful_map(
    "tally", op.key_on("by-project", results, lambda r: r.project_id), tally
)
deltas = op.filter_map_value("new", per_project, lambda delta: delta)
totals = op.stateful(
    "totals", op.key_on("all", op.map("unkey", deltas, lambda kv: kv[1]), lambda _: "all"), Summary
)
op.output("summary", op.map("line", totals, lambda kv: kv[1]), LogSink(log))
