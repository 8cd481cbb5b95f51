"""What chaos keeps of a stage that stopped by itself: its exit status and its last log line,
so the stop can be explained after the run's folder is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from claimx_flow.config import Settings
from claimx_flow.lab.chaos import last_log_line
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
