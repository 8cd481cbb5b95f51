"""Where a download's cost is: ``python -m claimx_flow.lab.bench.download_parts [DIR]``.

The download bench compares the stage with a bare fetch loop. This splits the gap in two: the
same URLs fetched by the bare loop, then by the stage's own ``download_to_cache`` (URL checks,
deadline, spool, cached message) at the download bench's concurrency (20), without Kafka or
Bytewax. What ``download_to_cache`` adds over the bare loop is the download's own code; what
the stage adds over ``download_to_cache`` is the dataflow around it. Files go to ``DIR``
(default: a fresh temporary folder; give a tmpfs path to leave the disk out).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from claimx_flow.config import Settings
from claimx_flow.lab.bench.download import download_tasks, fetch_loop
from claimx_flow.lab.bench.harness import BenchConfig
from claimx_flow.lab.bench.measure import cpu_seconds
from claimx_flow.lab.simulator import SimulatorConfig, start_subprocess
from claimx_flow.media.cache_runs import CacheRun
from claimx_flow.media.downloader import DownloadPolicy, download_to_cache
from claimx_flow.models import DownloadTask

FILES = 10_000
SIZE = 64 * 1024
SEED = 7


async def _through_the_stage_code(
    tasks: list[DownloadTask], directory: Path, policy: DownloadPolicy, concurrency: int
) -> None:
    run = CacheRun(directory)
    slots = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    async with aiohttp.ClientSession(connector=policy.connector(concurrency), timeout=timeout) as s:

        async def one(task: DownloadTask) -> None:
            async with slots:
                await download_to_cache(s, task, run, policy)

        await asyncio.gather(*(one(task) for task in tasks))


def main(base: Path, files: int = FILES, rounds: int = 2) -> None:
    settings = Settings()
    policy = DownloadPolicy.from_settings(settings)
    concurrency = BenchConfig().concurrency  # as the download bench runs the stage
    simulator = start_subprocess(SimulatorConfig(seed=SEED, media_bytes=SIZE))
    try:
        tasks = download_tasks(simulator, SEED, files)
        urls = [task.download_url for task in tasks]
        for _ in range(rounds):
            for name in ("bare fetch loop", "download_to_cache"):
                directory = base / name.replace(" ", "-")
                directory.mkdir(parents=True, exist_ok=True)
                started, cpu = time.perf_counter(), cpu_seconds()
                if name == "bare fetch loop":
                    asyncio.run(fetch_loop(urls, directory, SIZE, lambda done: None, concurrency))
                else:
                    asyncio.run(_through_the_stage_code(tasks, directory, policy, concurrency))
                seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
                print(
                    f"{name:>17} at concurrency {concurrency}: {files / seconds:>6,.0f} files/s, "
                    f"{cpu / files * 1e6:4.0f} us of CPU per file"
                )
                shutil.rmtree(directory)
    finally:
        simulator.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="claimx-download-parts-") as folder:
            main(Path(folder))
