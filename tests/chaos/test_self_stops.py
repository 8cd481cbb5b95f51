"""What chaos keeps of a stage that stopped by itself: its exit status and the last line it
logged, so the stop can be explained after the run's folder is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from claimx_flow.config import Settings
from claimx_flow.lab.chaos import ChaosReport, SelfStop, _revive, last_log_line
from claimx_flow.lab.pipeline import Pipeline


def _ended(code: str) -> subprocess.Popen[bytes]:
    """A child that has ended but is not reaped yet, as chaos finds a stage that stopped."""
    process = subprocess.Popen([sys.executable, "-c", code])
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # waits, leaves it to be reaped
    return process


def test_the_last_line_of_the_newest_log_is_kept(tmp_path: Path) -> None:
    older, newer = tmp_path / "download-0.log", tmp_path / "download-1.log"
    older.write_text("started\nTraceback (most recent call last):\nValueError: old\n")
    newer.write_text("x" * 20_000 + "\nstarted\nclaimx: Kafka is unreachable at 127.0.0.1:1\n\n")
    os.utime(older, (time.time() - 60, time.time() - 60))

    assert last_log_line([older, newer]) == "claimx: Kafka is unreachable at 127.0.0.1:1"
    assert last_log_line([older]) == "ValueError: old"
    assert last_log_line([tmp_path / "missing.log"]) == ""
    long = tmp_path / "long.log"
    long.write_text("y" * 5_000 + "\n")
    assert len(last_log_line([long])) == 300


def test_an_ended_process_reports_its_own_status_and_log_not_its_peers(tmp_path: Path) -> None:
    exited, killed = _ended("raise SystemExit(2)"), _ended("import os; os.abort()")
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pipeline = Pipeline(Settings(), {}, tmp_path, processes={"download": [exited, running]})
        assert pipeline.dead() == ["download"]  # this reaps: the status must survive it
        assert pipeline.exit_codes("download") == (2, None)
        assert pipeline.ended_logs("download") == [tmp_path / "download-0.log"]
        alone = Pipeline(Settings(), {}, tmp_path, processes={"upload": [killed]})
        assert alone.dead() == ["upload"]
        assert alone.exit_codes("upload") == (-signal.SIGABRT,)
        assert alone.ended_logs("upload") == [tmp_path / "upload.log"]
    finally:
        running.kill()
        running.wait()


def test_a_stage_that_stopped_by_itself_is_restarted_and_named_with_why(tmp_path: Path) -> None:
    (tmp_path / "download.log").write_text(
        "download starting\nkafka: broker unreachable at 127.0.0.1:1 [x]\n"
    )
    ended = _ended("raise SystemExit(2)")
    restarted: list[str] = []

    class Stopped(Pipeline):
        def restart(self, stage: str) -> None:  # the real one starts a stage process
            restarted.append(stage)
            self.processes.pop(stage)

    pipeline = Stopped(Settings(), {}, tmp_path, processes={"download": [ended]})
    report, said = ChaosReport(), []
    _revive(pipeline, report, said.append)

    assert restarted == ["download"]
    assert report.self_stops == [
        SelfStop("download", (2,), "kafka: broker unreachable at 127.0.0.1:1 [x]")
    ]
    assert report.restarts_after_crash == 1
    assert said == [
        "download stopped by itself (exit 2): kafka: broker unreachable at 127.0.0.1:1 [x]; "
        "starting it again"
    ]
