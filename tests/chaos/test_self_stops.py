"""What chaos keeps of a stage that stopped by itself: its exit status and its last log line,
so the stop can be explained after the run's folder is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from claimx_flow.config import Settings
from claimx_flow.lab.chaos import ChaosReport, SelfStop, _revive, last_log_line
from claimx_flow.lab.pipeline import Pipeline


def test_the_last_line_of_the_newest_log_is_kept(tmp_path: Path) -> None:
    older, newer = tmp_path / "download-0.log", tmp_path / "download-1.log"
    older.write_text("started\nTraceback (most recent call last):\nValueError: old\n")
    newer.write_text("x" * 20_000 + "\nstarted\nclaimx: Kafka is unreachable at 127.0.0.1:1\n\n")
    os.utime(older, (time.time() - 60, time.time() - 60))

    assert last_log_line([older, newer]) == "claimx: Kafka is unreachable at 127.0.0.1:1"
    assert last_log_line([older]) == "ValueError: old"
    assert last_log_line([tmp_path / "missing.log"]) == ""


def test_a_process_that_ended_reports_its_status(tmp_path: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ended.wait(30)
        pipeline = Pipeline(Settings(), {}, tmp_path, processes={"download": [ended, running]})
        assert pipeline.exit_codes("download") == (2, None)
        assert pipeline.dead() == ["download"]
    finally:
        running.kill()
        running.wait()


def test_a_stage_that_stopped_by_itself_is_restarted_and_named_with_why(tmp_path: Path) -> None:
    log = tmp_path / "download.log"
    log.write_text("download starting\nkafka: broker unreachable at 127.0.0.1:1 [x]\n")
    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    ended.wait(30)
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
