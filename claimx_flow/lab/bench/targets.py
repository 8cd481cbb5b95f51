"""The performance targets (issues 8 and 18), checked against a run: pass or miss, and by how
much. Throughput and ratio targets are for one process; scaling targets compare a cluster's
row with the one-process row of the same run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from claimx_flow.lab.bench.report import StageResult

Metric = Callable[[StageResult], float | None]


def _throughput(r: StageResult) -> float | None:
    return r.throughput_per_s


def _ratio(r: StageResult) -> float | None:
    return r.ratio


def _calls(r: StageResult) -> float | None:
    return r.api_calls_per_item


def _rss(r: StageResult) -> float | None:
    return r.peak_rss_mib


def _ratio_seen(r: StageResult) -> float | None:
    """The ratio as measured, even one the report refused to print."""
    refused = r.extra.get("refused_ratio")
    return float(refused) if refused is not None else r.ratio


def _speedup(r: StageResult) -> float | None:
    return r.speedup


def _p99_s(r: StageResult) -> float | None:
    p99 = r.latency_ms.get("p99")
    return None if p99 is None else p99 / 1000


@dataclass(frozen=True)
class Target:
    stage: str
    workload: str
    """Prefix of the result's workload; ``""`` matches every workload of the stage."""
    text: str
    metric: Metric
    op: Literal[">=", "<="]
    bound: float
    fmt: str
    scaled: bool | None = False
    """Which rows: one-process rows (False), cluster rows (True) or both (None)."""
    needs_raw: bool = False
    """Only rows measured beside a raw limit."""

    def applies(self, r: StageResult) -> bool:
        shape = self.scaled is None or self.scaled == (r.processes > 1)
        measured = not self.needs_raw or r.raw is not None
        return (
            shape
            and measured
            and self.stage in ("*", r.stage)
            and r.workload.startswith(self.workload)
        )

    def check(self, r: StageResult) -> dict[str, Any]:
        value = self.metric(r)
        row: dict[str, Any] = {
            "stage": r.stage,
            "processes": r.processes,
            "shape": f" x{r.processes} processes" if r.processes > 1 else "",
            "workload": r.workload,
            "target": self.text,
            "measured": None if value is None else round(value, 4),
            "measured_text": "-" if value is None else self.fmt.format(value),
            "bound": self.bound,
        }
        if value is None:
            return {**row, "verdict": "n/a", "by": "not measured"}
        passed = value >= self.bound if self.op == ">=" else value <= self.bound
        change = value / self.bound - 1 if self.bound else 0.0
        if self.op == "<=":
            word = "under" if passed else "over"
        else:
            word = "above" if passed else "below"
        by = f"{abs(change):.0%} {word} {self.fmt.format(self.bound)}"
        return {**row, "verdict": "pass" if passed else "miss", "by": by}


RATE = "{:,.0f}/s"
PERCENT = "{:.0%}"

SPEEDUP = "{:.2f}x"
MIB_FMT = "{:,.0f} MiB"

TARGETS: tuple[Target, ...] = (
    Target("ingest", "mixed", "≥ 25,000 events/s", _throughput, ">=", 25_000, RATE),
    Target("ingest", "mixed", "≥ 50% of the bare passthrough", _ratio, ">=", 0.5, PERCENT),
    Target("enrich", "file-heavy", "≥ 25,000 events/s", _throughput, ">=", 25_000, RATE),
    Target("enrich", "file-heavy", "≤ 0.05 API calls per event", _calls, "<=", 0.05, "{:.3f}"),
    Target(
        "enrich",
        "project-created",
        "≥ 60% of the simulator's own request rate (x batching ratio)",
        _ratio,
        ">=",
        0.6,
        PERCENT,
    ),
    Target("download", "64KiB", "≥ 1,500 files/s with sha256", _throughput, ">=", 1_500, RATE),
    Target("download", "64KiB", "≥ 70% of the bare fetch loop", _ratio, ">=", 0.7, PERCENT),
    Target("upload", "local", "≥ 1,500 files/s", _throughput, ">=", 1_500, RATE),
    Target("retry", "held", "memory flat: ≤ 256 MiB RSS", _rss, "<=", 256, MIB_FMT),
    Target("retry", "held", "release lateness p99 ≤ 1 s", _p99_s, "<=", 1.0, "{:.3f} s"),
    Target(
        "ingest", "mixed", "≥ 1.5x the 1-process row", _speedup, ">=", 1.5, SPEEDUP, scaled=True
    ),
    Target(
        "enrich",
        "file-heavy",
        "≥ 1.5x the 1-process row",
        _speedup,
        ">=",
        1.5,
        SPEEDUP,
        scaled=True,
    ),
    Target(
        "*",
        "",
        "raw limit is a limit: ratio ≤ 105%",
        _ratio_seen,
        "<=",
        1.05,
        PERCENT,
        scaled=None,
        needs_raw=True,
    ),
    Target("*", "", "peak RSS ≤ 512 MiB (the pod request)", _rss, "<=", 512, MIB_FMT, scaled=None),
)


def evaluate(results: list[StageResult]) -> list[dict[str, Any]]:
    """One row per (target, matching result), in the order of the issue's table."""
    return [target.check(r) for target in TARGETS for r in results if target.applies(r)]


def targets_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | workload | target | measured | result | by how much |",
        "|---|---|---|---:|---|---|",
    ]
    for row in rows:
        mark = {"pass": "✅ pass", "miss": "❌ miss"}.get(row["verdict"], row["verdict"])
        lines.append(
            f"| {row['stage']}{row['shape']} | {row['workload']} | {row['target']} "
            f"| {row['measured_text']} "
            f"| {mark} | {row['by']} |"
        )
    return "\n".join(lines)
