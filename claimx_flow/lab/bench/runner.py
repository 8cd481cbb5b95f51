"""Running a stage over a preloaded input until it exits, and bounding its processing window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from claimx_flow.config import Settings
from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.harness import BenchEnv
from claimx_flow.lab.bench.measure import Window
from claimx_flow.lab.bench.progress import Phases
from claimx_flow.lab.bench.report import StageResult
from claimx_flow.lab.bench.stage_process import StageProcess, StageRun

WINDOW_METHOD = (
    "first message consumed (the stage's /metrics, scraped every 0.1 s until then) → last output "
    "(create time of the last Kafka message written, or the last Delta commit if later)"
)


@dataclass
class Drained:
    """A stage run over a preloaded topic: the process, its window and what it wrote."""

    run: StageRun
    window: Window
    spans: dict[str, kafka_io.Span]

    def output(self, topic: str) -> int:
        return self.spans[topic].count if topic in self.spans else 0


def run_until_drained(
    env: BenchEnv,
    settings: Settings,
    stage: str,
    expected: int,
    outputs: Sequence[str],
    phases: Phases,
    label: str,
) -> Drained:
    """Start the stage with ``CLAIMX_STOP_AT_END``, wait for it to exit, read its outputs."""
    logs, profile = settings.claimx_data_dir / "logs", env.config.profile(label)
    process = StageProcess(
        settings, stage, logs, profile, env.config.workers, env.config.processes
    ).start()
    update = phases.start(f"{label}: {stage} dataflow", expected)
    try:
        run = process.wait(env.config.stage_timeout_s, on_poll=lambda r: update(r.consumed))
    except BaseException:
        process.kill()
        raise
    update(expected)
    spans = {topic: kafka_io.span(settings, topic) for topic in outputs}
    commits = kafka_io.delta_commit_times(settings.tables_dir)
    return Drained(run, processing_window(run, spans, commits), spans)


def processing_window(
    run: StageRun, spans: dict[str, kafka_io.Span], commits: Sequence[float]
) -> Window:
    ends = [s.last for s in spans.values() if s.last is not None] + list(commits[-1:])
    firsts = [s.first for s in spans.values() if s.first is not None]
    if run.first_consumed_at is not None:
        start, method = run.first_consumed_at, WINDOW_METHOD
    elif firsts:
        start, method = min(firsts), "first output → last output (no /metrics scrape)"
    else:
        return Window(0.0, run.wall_s, "process start → exit (nothing else observed)")
    end = max(ends) if ends else start + run.wall_s
    return Window(start, end, method)


def fill_run(result: StageResult, drained: Drained) -> None:
    """Throughput, wall time, CPU and memory of a drained run into ``result``."""
    result.throughput_per_s = drained.window.rate(result.items)
    result.window_s = round(drained.window.seconds, 3)
    result.window = drained.window.method
    result.wall_s = round(drained.run.wall_s, 2)
    result.cpu_s = round(drained.run.cpu_s, 2)
    result.set_rss(drained.run.peak_rss_bytes)
    result.outputs.update({name: span.count for name, span in drained.spans.items()})
    result.extra["stage_metrics"] = stage_metrics(drained.run.last_metrics)


_SUMMARIES = {
    "claimx_batch_size": "batches",
    "claimx_delta_write_duration_seconds": "delta_writes",
    "claimx_api_request_duration_seconds": "api_requests",
    "claimx_download_duration_seconds": "downloads",
    "claimx_upload_duration_seconds": "uploads",
}


def stage_metrics(text: str) -> dict[str, dict[str, float]]:
    """Count, sum and mean of the stage's own histograms, per label set (last scrape of
    every process)."""
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        for metric, short in _SUMMARIES.items():
            for part in ("_sum", "_count"):
                if name == metric + part:
                    labels = rest.rsplit("}", 1)[0]
                    key = f"{short}{{{_without_stage(labels)}}}"
                    values = found.setdefault(key, {})  # summed over a cluster's processes
                    values[part[1:]] = values.get(part[1:], 0.0) + float(line.rsplit(" ", 1)[1])
    for values in found.values():
        if values.get("count"):
            values["mean"] = round(values.get("sum", 0.0) / values["count"], 4)
    return found


def _without_stage(labels: str) -> str:
    return ",".join(p for p in labels.split(",") if p and not p.startswith("stage="))


def expect(result: StageResult, what: str, got: int, wanted: int) -> None:
    """Record a problem when a count is off: a benchmark that lost work measured nothing."""
    if got != wanted:
        result.problems.append(f"{what}: {got:,} where {wanted:,} were expected")
