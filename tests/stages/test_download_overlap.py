"""A slow media file holds back none of its batch-mates: through a real download process, on a
real broker, against the simulator over HTTP, the others' cached messages are written while the
slow one is still being served; then it lands too."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from tests.isolation import isolated_settings
from tests.stages.download_runs import (
    Outcomes,
    cached,
    errors,
    expected_bytes,
    media_tasks,
    orphans,
    produce,
    wait_until,
)

HANG_S = 15.0
"""How long the simulator holds the first media request before answering it normally."""


def test_a_slow_file_holds_back_none_of_its_batch_mates(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        cache_dir=tmp_path / "cache",
        claimx_topic_partitions=1,
        download_batch_size=20,
        download_concurrency=10,
        download_timeout_seconds=HANG_S * 3,
    )
    tasks = media_tasks(sim, 8, 7_300_000)
    produce(settings, tasks)  # all there before the stage reads: one batch of 8
    sim.set_faults(fail_next=["timeout"], hang_s=HANG_S, apply_to=["media"])
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["download"])
    try:
        wait_until(lambda: sim.stats.faults["timeout"] == 1, "the slow file's request")
        slow_since = time.monotonic()
        wait_until(lambda: len(cached(settings)) >= 7, "the batch-mates", timeout_s=HANG_S)
        assert sim.stats.media_in_flight == 1  # the slow one is still being served
        assert time.monotonic() - slow_since < HANG_S
        landed = {download.media_id for download in cached(settings)}
        (slow,) = {task.media_id for task in tasks} - landed

        wait_until(lambda: len(cached(settings)) >= 8, "the slow file", timeout_s=HANG_S * 3)
        assert time.monotonic() - slow_since >= HANG_S
    finally:
        pipeline.stop()
        log = (tmp_path / "logs" / "download.log").read_text(errors="replace")
    outcomes = Outcomes.read(settings)
    assert sorted(outcomes.cached) == sorted(task.media_id for task in tasks)
    assert slow in outcomes.cached
    assert outcomes.duplicates() == 0 and not outcomes.retried and not outcomes.dead
    for downloads in outcomes.cached.values():
        (download,) = downloads
        content = expected_bytes(sim, download.media_id)
        assert Path(download.local_path).read_bytes() == content
        assert download.sha256 == hashlib.sha256(content).hexdigest()
    assert orphans(settings, outcomes) == []
    assert errors(log) == [], log[-3000:]
