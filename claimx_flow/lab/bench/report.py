"""What a bench run found: one result per stage and workload, as JSON and as Markdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from claimx_flow.lab.bench import REPORT_SCHEMA
from claimx_flow.lab.bench.measure import MIB

MAX_RATIO = 1.05
"""Above this the stage beat its own raw limit by more than run-to-run noise."""


@dataclass(frozen=True)
class Limit:
    """The raw limit of the same work on the same machine, measured in the same run."""

    what: str
    per_s: float
    items: int
    seconds: float


@dataclass
class StageResult:
    """One stage on one workload.

    ``throughput_per_s`` is over the processing window (``window``: how it was bounded), which
    excludes process start-up and shutdown; ``wall_s`` is the whole process, start to exit.
    """

    stage: str
    workload: str
    unit: str
    items: int
    throughput_per_s: float | None = None
    window_s: float | None = None
    window: str = ""
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_what: str = ""
    api_calls: int | None = None
    api_calls_per_item: float | None = None
    bytes: int | None = None
    bytes_per_s: float | None = None
    raw: Limit | None = None
    ratio: float | None = None
    outputs: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    processes: int = 1
    speedup: float | None = None
    """Throughput over the same workload's one-process row in the same run (scaling rows)."""
    outcome: dict[str, str] = field(default_factory=dict)
    """Digests of the Delta rows and output messages (``outcome.outcome``), for comparing runs."""
    load: tuple[float, float] | None = None
    """1-minute load average before and after the run: other work on the machine skews it."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.workload}"

    def set_rss(self, peak_bytes: int) -> None:
        self.peak_rss_mib = round(peak_bytes / MIB, 1)

    def set_raw(self, limit: Limit) -> None:
        """The raw limit, and the ratio to it, unless the stage beat it by more than noise:
        then the reference is not a limit, and no ratio is printed (the run is flagged)."""
        self.raw = limit
        if self.throughput_per_s is None or limit.per_s <= 0:
            return
        ratio = self.throughput_per_s / limit.per_s
        if ratio > MAX_RATIO:
            self.extra["refused_ratio"] = round(ratio, 3)
            self.problems.append(
                f"the stage ran at {ratio:.0%} of its raw limit: the reference is not an upper "
                f"bound ({limit.what}), so no ratio is reported"
            )
            return
        self.ratio = ratio

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    command: str
    results: list[StageResult] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None
    load_after: list[float] = field(default_factory=list)

    def to_json(self, targets: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "command": self.command,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "machine": self.machine,
            "load_after": self.load_after,
            "config": self.config,
            "results": [r.to_json() for r in self.results],
            "targets": targets,
        }


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _latency(result: StageResult) -> str:
    lat = result.latency_ms
    if not lat:
        return "-"
    return f"{_num(lat.get('p50'), 1)} / {_num(lat.get('p99'), 1)} ms"


def _raw(result: StageResult) -> str:
    if result.raw is None:
        return "-"
    return f"{_num(result.raw.per_s)}/s"


def _bytes_per_s(result: StageResult) -> str:
    return "-" if result.bytes_per_s is None else f"{result.bytes_per_s / MIB:,.1f} MiB/s"


def _load(result: StageResult) -> str:
    return "-" if result.load is None else f"{result.load[0]:.1f} → {result.load[1]:.1f}"


def results_markdown(results: list[StageResult]) -> str:
    lines = [
        "| stage | workload | items | throughput | raw limit (same run) | ratio "
        "| latency p50 / p99 | peak RSS | API calls / item | bytes/s | vs 1 process "
        "| load before → after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rate = f"{_num(r.throughput_per_s)} {r.unit}/s" if r.throughput_per_s else "-"
        ratio = f"{r.ratio:.0%}" if r.ratio is not None else "-"
        if "refused_ratio" in r.extra:
            ratio = "refused: over 105%"
        rss = f"{_num(r.peak_rss_mib)} MiB" if r.peak_rss_mib is not None else "-"
        calls = _num(r.api_calls_per_item, 3) if r.api_calls_per_item is not None else "-"
        flag = (f" -w {r.workers}" if r.workers > 1 else "") + (
            f" x{r.processes} processes" if r.processes > 1 else ""
        )
        flag += "" if r.ok else " ⚠"
        speedup = "-" if r.speedup is None else f"{r.speedup:.2f}x"
        lines.append(
            f"| {r.stage}{flag} | {r.workload} | {r.items:,} | {rate} | {_raw(r)} | {ratio} "
            f"| {_latency(r)} | {rss} | {calls} | {_bytes_per_s(r)} | {speedup} | {_load(r)} |"
        )
    return "\n".join(lines)


def notes_markdown(results: list[StageResult]) -> str:
    """What each raw limit and latency measured, and any problem seen, one line each."""
    lines = []
    for r in results:
        if r.raw is not None:
            lines.append(f"- {r.key}: raw limit = {r.raw.what}")
        if r.latency_what:
            lines.append(f"- {r.key}: latency = {r.latency_what}")
        lines.append(f"- {r.key}: window = {r.window}")
        lines.extend(f"- {r.key}: ⚠ {problem}" for problem in r.problems)
    return "\n".join(lines)
