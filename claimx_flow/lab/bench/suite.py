"""Running stage benchmarks in order on one broker and simulator, into one report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from claimx_flow.lab.bench import download, enrich, ingest, retry, upload
from claimx_flow.lab.bench.harness import BenchConfig, BenchEnv
from claimx_flow.lab.bench.measure import load_average, machine_facts
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


def run_suite(
    stages: Sequence[str], config: BenchConfig, phases: Phases, command: str = ""
) -> Report:
    """Each stage's benchmark in turn; a stage that fails is reported, the others still run."""
    report = Report(machine_facts(), _config_json(config), command)
    with BenchEnv(config) as env:
        report.config["broker"] = env.broker_note
        report.config["workdir"] = str(env.workdir)
        for stage in stages:
            phases.note(f"[bold]{stage}[/] (load {_load()})")
            before = load_average()[0]
            try:
                results = BENCHES[stage](env, phases)
            except Exception as exc:  # one stage's failure must not hide the others' figures
                log.debug("bench %s failed", stage, exc_info=True)
                failed = StageResult(stage, "failed", "items", 0)
                failed.problems.append(f"{type(exc).__name__}: {exc}")
                results = [failed]
            for result in results:  # the machine is shared: say how busy it was
                result.load = (round(before, 2), round(load_average()[0], 2))
                result.workers = config.workers
            report.results.extend(results)
    report.finished_at = datetime.now(UTC).isoformat()
    report.load_after = [round(x, 2) for x in load_average()]
    return report


def _config_json(config: BenchConfig) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in load_average())
