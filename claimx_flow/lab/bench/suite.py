"""Running stage benchmarks in order on one broker and simulator, into one report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

from claimx_flow.lab.bench import download, enrich, ingest, retry, upload
from claimx_flow.lab.bench.harness import BenchConfig, BenchEnv
from claimx_flow.lab.bench.measure import load_average, machine_facts
from claimx_flow.lab.bench.outcome import differences
from claimx_flow.lab.bench.progress import Phases
from claimx_flow.lab.bench.report import Report, StageResult

log = logging.getLogger(__name__)

Bench = Callable[[BenchEnv, Phases], list[StageResult]]

BENCHES: dict[str, Bench] = {
    "ingest": ingest.bench,
    "enrich": enrich.bench,
    "download": download.bench,
    "upload": upload.bench,
    "retry": retry.bench,
}
ORDER = tuple(BENCHES)

SCALED: dict[str, Bench] = {
    "ingest": lambda env, phases: ingest.bench(env, phases, latency=False),
    "enrich": lambda env, phases: [enrich.file_heavy(env, phases)],
}
"""What ``scale_to`` runs again as a cluster: the stages whose work spreads over processes."""


def run_suite(
    stages: Sequence[str], config: BenchConfig, phases: Phases, command: str = ""
) -> Report:
    """Each stage's benchmark in turn; a stage that fails is reported, the others still run."""
    report = Report(machine_facts(), _config_json(config), command)
    with BenchEnv(config) as env:
        report.config["broker"] = env.broker_note
        report.config["workdir"] = str(env.workdir)
        scaled = replace(config, processes=config.scale_to)
        for stage in stages:
            report.results.extend(_run_stage(stage, BENCHES[stage], env, phases, config))
            if config.scale_to > 1 and stage in SCALED:  # right after, on the same machine load
                env.config = scaled
                try:
                    rows = _run_stage(stage, SCALED[stage], env, phases, scaled)
                finally:
                    env.config = config
                report.results.extend(compared(rows, report.results))
    report.finished_at = datetime.now(UTC).isoformat()
    report.load_after = [round(x, 2) for x in load_average()]
    return report


def _run_stage(
    stage: str, bench: Bench, env: BenchEnv, phases: Phases, config: BenchConfig
) -> list[StageResult]:
    """One stage's rows; a stage that fails is one failed row, so the others still run."""
    shape = f", {config.processes} processes" if config.processes > 1 else ""
    phases.note(f"[bold]{stage}[/]{shape} (load {_load()})")
    before = load_average()[0]
    try:
        results = bench(env, phases)
    except Exception as exc:  # one stage's failure must not hide the others' figures
        log.debug("bench %s failed", stage, exc_info=True)
        failed = StageResult(stage, "failed", "items", 0)
        failed.problems.append(f"{type(exc).__name__}: {exc}")
        results = [failed]
    for result in results:  # the machine is shared: say how busy it was
        result.load = (round(before, 2), round(load_average()[0], 2))
        result.workers = config.workers
        result.processes = config.processes
    return results


def compared(scaled: list[StageResult], earlier: list[StageResult]) -> list[StageResult]:
    """Each cluster row beside its one-process row of the same run: the speedup, and a problem
    when the cluster wrote anything else (other Delta rows, other messages)."""
    for row in scaled:
        base = next(
            (
                r
                for r in earlier
                if r.key == row.key and r.processes == 1 and r.workers == row.workers
            ),
            None,
        )
        if base is None or not base.throughput_per_s or not row.throughput_per_s:
            continue
        row.speedup = row.throughput_per_s / base.throughput_per_s
        differ = differences(base.outcome, row.outcome)
        row.extra["identical_to_one_process"] = not differ
        if differ:
            row.problems.append(
                f"{row.processes} processes wrote other results than 1 process: {', '.join(differ)}"
            )
    return scaled


def _config_json(config: BenchConfig) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in load_average())
