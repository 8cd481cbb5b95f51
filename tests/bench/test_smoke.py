"""A tiny run of the bench harness, so it cannot rot: the report's shape and sane numbers.

Never a speed assertion: the figures depend on the machine and its load. What must hold is that
every stage ran to the end, counted what it was given and reported each measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claimx_flow.lab.bench import REPORT_SCHEMA
from claimx_flow.lab.cli import bench_cmd

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def bench_env(clean_env: pytest.MonkeyPatch, kafka_bootstrap: str) -> pytest.MonkeyPatch:
    """The session's broker, reused by the harness as it reuses ``KAFKA_BOOTSTRAP_SERVERS``."""
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    clean_env.setenv("CLAIMX_CACHE_DIR", str(Path(__file__).resolve().parents[2] / ".cache"))
    return clean_env


def test_ingest_and_upload_report(bench_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    for stage in ("ingest", "upload"):
        result = CliRunner().invoke(
            bench_cmd.app, [stage, "--events", "300", "--partitions", "2", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["schema"] == REPORT_SCHEMA
        assert report["machine"]["nproc"] >= 1
        (row,) = report["results"]
        assert row["stage"] == stage and row["ok"], row["problems"]
        _sane(row)
        assert {t["verdict"] for t in report["targets"]} <= {"pass", "miss"}
        assert any("512 MiB" in t["target"] for t in report["targets"])
        assert f"| {stage} |" in result.output


def _sane(row: dict[str, object]) -> None:
    assert row["items"] == 300
    throughput, ratio, rss = row["throughput_per_s"], row["ratio"], row["peak_rss_mib"]
    assert isinstance(throughput, float) and throughput > 0
    assert isinstance(ratio, float) and ratio > 0
    assert isinstance(rss, float) and 20 < rss < 4096
    assert isinstance(row["window_s"], float) and row["window_s"] > 0
    assert row["wall_s"] is not None and row["wall_s"] >= row["window_s"]
    raw = row["raw"]
    assert isinstance(raw, dict) and raw["per_s"] > 0 and raw["items"] == 300
    if row["stage"] == "ingest":
        latency = row["latency_ms"]
        assert isinstance(latency, dict)
        assert 0 <= latency["p50"] <= latency["p99"] <= latency["max"]
    else:
        assert row["bytes"] == 300 * 64 * 1024


def test_a_two_process_row_writes_what_one_process_writes(
    bench_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--scale-to 2`` runs ingest again as a cluster of two processes right after its
    one-process run: same rows and messages (compared by digest), and a speedup figure."""
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        bench_cmd.app,
        ["ingest", "--events", "300", "--partitions", "2", "--scale-to", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    one, two = json.loads(out.read_text())["results"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["ok"] and two["extra"]["identical_to_one_process"] is True, two["problems"]
    assert one["outcome"] == two["outcome"]
    assert one["outcome"]["messages:tasks"].startswith("300:")
    assert one["outcome"]["rows:claimx_events"].startswith("300:")
    assert isinstance(two["speedup"], float) and two["speedup"] > 0
    assert "| ingest x2 processes |" in result.output


def test_a_ratio_over_105_percent_is_refused() -> None:
    """A stage cannot beat its raw limit: the reference is broken, not the stage fast."""
    from claimx_flow.lab.bench.report import Limit, StageResult, results_markdown
    from claimx_flow.lab.bench.targets import evaluate

    honest, broken = StageResult("s", "w", "items", 10), StageResult("s", "w", "items", 10)
    honest.throughput_per_s = broken.throughput_per_s = 100.0
    honest.set_raw(Limit("a real bound", 100.0, 10, 0.1))
    broken.set_raw(Limit("a broken loop", 50.0, 10, 0.2))
    assert honest.ratio == 1.0 and honest.ok
    assert broken.ratio is None and not broken.ok
    assert "not an upper bound" in broken.problems[0]
    assert "refused" in results_markdown([broken])
    (row,) = [r for r in evaluate([broken]) if "105%" in r["target"]]
    assert (row["verdict"], row["measured"]) == ("miss", 2.0)


def test_a_bare_loop_limit_is_its_fastest_run() -> None:
    """A limit is what the work can do at best: of several runs of the bare loop, the fastest
    is kept, and the reference says so."""
    from claimx_flow.lab.bench.download import best_of
    from claimx_flow.lab.bench.report import Limit

    limit = best_of([Limit("loop", 95.0, 200, 2.1), Limit("loop", 121.0, 200, 1.65)])
    assert (limit.per_s, limit.seconds) == (121.0, 1.65)
    assert "fastest of 2 runs (95-121/s)" in limit.what


def test_the_download_split_fetches_every_file_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``download_parts`` runs against a real simulator over HTTP: both loops store every
    file and print a figure each (a figure for the docs, never asserted)."""
    from claimx_flow.lab.bench.download_parts import main

    main(tmp_path, files=40, rounds=1, split=True, loops=(2,))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" at ")[0].strip() for line in lines] == [
        "bare fetch loop",
        "request options",
        "+ deadline",
        "+ URL and task checks",
        "download_to_cache",
        "on 2 loops",
    ]
    assert all("files/s" in line for line in lines)


def test_thread_cpu_finds_a_stage_process_and_reads_each_thread() -> None:
    """A process with a stage's command line and a busy second thread: both threads are read
    from ``/proc`` until it exits, the main one named as the Bytewax worker's."""
    from claimx_flow.lab.bench.thread_cpu import find_stage, follow, summary

    busy = (  # spins until the thread itself has had 0.4 s of CPU, however loaded the machine
        "import threading, time\n"
        "def spin():\n"
        "    while time.thread_time() < 0.4: pass\n"
        "t = threading.Thread(target=spin); t.start(); t.join()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", busy, "-m", "bytewax.run", "dataflows.smoke-only"]
    )
    try:
        pid = find_stage("smoke-only", timeout_s=10)
        assert pid == process.pid
        lines = summary(pid, follow(pid))
    finally:
        process.wait(10)
    spinning = [line for line in lines if not line.startswith(("main", "rdk"))]
    assert len(spinning) == 1, lines
    assert float(spinning[0].split()[3]) >= 0.3, lines  # "python3.11 <tid> x1 0.40 s …"


def test_thread_cpu_takes_only_the_stage_itself() -> None:
    from claimx_flow.lab.bench.thread_cpu import runs_stage

    python = "/work/.venv/bin/python3.11"
    assert runs_stage([python, "-m", "bytewax.run", "dataflows.enrich:flow", "-r", "x"], "enrich")
    assert runs_stage([python, "-m", "bytewax.run", "dataflows.enrich"], "enrich")
    assert not runs_stage([python, "-m", "bytewax.run", "dataflows.enrichment"], "enrich")
    assert not runs_stage(
        ["timeout", "9", python, "-m", "bytewax.run", "dataflows.enrich"], "enrich"
    )
    assert not runs_stage([python, "-c", "print('bytewax.run dataflows.enrich')"], "enrich")


def test_the_enrichment_split_enriches_every_event_both_ways(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``enrich_parts`` runs the stage's own code on the bench's file-heavy workload with the
    answers in memory, then against a real simulator over HTTP: every event becomes a download
    task both ways, and each way prints a figure (for the docs, never asserted)."""
    from claimx_flow.lab.bench.enrich_parts import main

    main(events=200, rounds=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["answers in memory", "API over HTTP"]
    assert all("(200 download tasks)" in line for line in lines)


def test_the_ingest_split_reads_every_event(capsys: pytest.CaptureFixture[str]) -> None:
    """``ingest_parts`` runs the stage's own code on the bench's mixed workload: every event
    becomes its task, and each round prints a figure (for the docs, never asserted)."""
    from claimx_flow.lab.bench.ingest_parts import main

    main(events=300, rounds=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("Ingester.ingest: ") for line in lines)
    assert all(line.endswith("(300 tasks, 0 dead letters)") for line in lines)


def test_the_fetch_timer_probe_drains_and_releases_every_way(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``fetch_timers`` starts a broker of its own and runs each way once: two drains and four
    releases, each with its figure (for the docs, never asserted)."""
    from claimx_flow.lab.bench.fetch_timers import main

    main(["--messages", "2000", "--held", "2000", "--spread", "1", "--lead", "2", "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == ["drain"] * 2 + [
        "release"
    ] * 4
    assert all("(2,000 due over 1 s)" in line for line in lines[2:])


def test_the_api_latency_option_slows_each_api_answer_and_survives_a_reset() -> None:
    """``--api-latency-ms`` stands for a ClaimX API across a network: every API answer of the
    bench's simulator comes that much later, also after the reset each stage run begins with,
    and media files are left alone (their bench measures the download, not the API)."""
    import base64
    import time
    import urllib.request

    from claimx_flow.lab.bench.harness import BenchConfig, BenchEnv, reset_simulator
    from claimx_flow.lab.simulator import SimulatorConfig

    env = BenchEnv(BenchConfig(api_latency_ms=300))  # not entered: no broker needed here
    try:
        sim = env.simulator(1024)
        reset_simulator(sim)
        with urllib.request.urlopen(f"{sim.origin}/_admin/faults", timeout=10) as response:
            faults = json.loads(response.read())
        assert faults["latency_ms"] == 300 and faults["apply_to"] == ["api"]
        config = SimulatorConfig()
        token = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
        request = urllib.request.Request(
            f"{sim.api_url}/export/project/5000001", headers={"Authorization": f"Basic {token}"}
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.3
    finally:
        env.close()
    assert BenchConfig().api_latency_ms == 0  # the default bench: the simulator beside the stage
