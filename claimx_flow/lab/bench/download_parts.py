"""Where a download's cost is: ``python -m claimx_flow.lab.bench.download_parts [DIR]``.

The download bench compares the stage with a bare fetch loop. This splits the gap in two: the
same URLs fetched by the bare loop, then by the stage's own ``download_to_cache`` (URL checks,
deadline, spool, cached message) at the download bench's concurrency (20), without Kafka or
Bytewax. What ``download_to_cache`` adds over the bare loop is the download's own code; what
the stage adds over ``download_to_cache`` is the dataflow around it. Files go to ``DIR``
(default: a fresh temporary folder; give a tmpfs path to leave the disk out).

``--split`` adds the steps between the two: the bare request with the stage's request options,
then with its deadline, then with its URL and task checks. ``--loops 2,3`` adds
``download_to_cache`` on that many event loops, each on its own thread with its own session
and a share of the concurrency: whether a second loop in the process pays.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp

from claimx_flow.config import Settings
from claimx_flow.lab.bench.download import download_tasks, fetch_loop
from claimx_flow.lab.bench.harness import BenchConfig
from claimx_flow.lab.bench.measure import cpu_seconds
from claimx_flow.lab.simulator import SimulatorConfig, start_subprocess
from claimx_flow.media.cache_runs import CacheRun
from claimx_flow.media.cache_spool import CacheSpool
from claimx_flow.media.downloader import CHUNK_BYTES, DownloadPolicy, download_to_cache
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


STEPS = ("request options", "+ deadline", "+ URL and task checks")
"""``--split``: each adds one thing ``download_to_cache`` does to the bare request before it."""


async def _steps(
    tasks: list[DownloadTask], directory: Path, policy: DownloadPolicy, concurrency: int, upto: int
) -> None:
    """The bare request with the first ``upto`` + 1 of ``STEPS``, through the stage's spool."""
    slots = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    options = {"allow_redirects": False, "auto_decompress": False}
    async with aiohttp.ClientSession(connector=policy.connector(concurrency), timeout=timeout) as s:

        async def fetch(index: int, task: DownloadTask) -> None:
            url = policy.check(task) if upto >= 2 else task.download_url
            spool = CacheSpool(directory / f"{index}.part")
            headers = {"Accept-Encoding": "identity"}
            async with s.get(url, headers=headers, **options) as response:  # type: ignore[arg-type]
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    await spool.add(chunk)
            await spool.commit(directory / f"{index}.bin")

        async def one(index: int, task: DownloadTask) -> None:
            async with slots:
                if upto >= 1:
                    async with asyncio.timeout(policy.timeout_s):
                        await fetch(index, task)
                else:
                    await fetch(index, task)

        await asyncio.gather(*(one(index, task) for index, task in enumerate(tasks)))


def _on_loops(
    tasks: list[DownloadTask], directory: Path, policy: DownloadPolicy, concurrency: int, loops: int
) -> None:
    """``download_to_cache`` over ``tasks`` split across ``loops`` event loops, one thread
    each, each loop with its own session and ``concurrency // loops`` of the concurrency (18
    in all for 3 loops of 20); a loop that fails fails the run."""
    share = max(1, concurrency // loops)
    failures: list[BaseException] = []

    def run(part: list[DownloadTask]) -> None:
        try:
            asyncio.run(_through_the_stage_code(part, directory, policy, share))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(tasks[i::loops],)) for i in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def main(
    base: Path,
    files: int = FILES,
    rounds: int = 2,
    split: bool = False,
    loops: tuple[int, ...] = (),
) -> None:
    settings = Settings()
    policy = DownloadPolicy.from_settings(settings)
    concurrency = BenchConfig().concurrency  # as the download bench runs the stage
    simulator = start_subprocess(SimulatorConfig(seed=SEED, media_bytes=SIZE))
    try:
        tasks = download_tasks(simulator, SEED, files)
        urls = [task.download_url for task in tasks]

        def bare(directory: Path) -> None:
            asyncio.run(fetch_loop(urls, directory, SIZE, lambda done: None, concurrency))

        def stage_code(directory: Path) -> None:
            asyncio.run(_through_the_stage_code(tasks, directory, policy, concurrency))

        parts: list[tuple[str, Callable[[Path], None]]] = [("bare fetch loop", bare)]
        if split:
            for upto, step in enumerate(STEPS):

                def steps(directory: Path, upto: int = upto) -> None:
                    asyncio.run(_steps(tasks, directory, policy, concurrency, upto))

                parts.append((step, steps))
        parts.append(("download_to_cache", stage_code))
        for count in loops:
            parts.append(
                (
                    f"on {count} loops",
                    partial(_on_loops, tasks, policy=policy, concurrency=concurrency, loops=count),
                )
            )
        for _ in range(rounds):
            for name, run in parts:
                directory = base / name.replace(" ", "-").replace("+", "and")
                directory.mkdir(parents=True, exist_ok=True)
                started, cpu = time.perf_counter(), cpu_seconds()
                run(directory)
                seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
                print(
                    f"{name:>22} at concurrency {concurrency}: {files / seconds:>6,.0f} files/s, "
                    f"{cpu / files * 1e6:4.0f} us of CPU per file",
                    flush=True,
                )
                shutil.rmtree(directory)
    finally:
        simulator.stop()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m claimx_flow.lab.bench.download_parts")
    parser.add_argument("dir", nargs="?", type=Path, help="where the files go (tmpfs: no disk)")
    parser.add_argument("--split", action="store_true", help="the steps in between, one by one")
    parser.add_argument("--loops", default="", help="download_to_cache on N loops, e.g. 2,3")
    parser.add_argument("--files", type=int, default=FILES)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    loops = tuple(int(n) for n in arguments.loops.split(",") if n.strip())
    if arguments.dir is not None:
        main(arguments.dir, arguments.files, split=arguments.split, loops=loops)
    else:
        with tempfile.TemporaryDirectory(prefix="claimx-download-parts-") as folder:
            main(Path(folder), arguments.files, split=arguments.split, loops=loops)
