"""download of media from the simulator's signed URLs, beside a bare aiohttp fetch loop.

The download tasks point at URLs signed exactly as the simulator signs them (its own signer,
its own seed), so the stage fetches real files over HTTP with real signature checks. The bare
loop fetches the same URLs at the same concurrency and does the same essential work per file
(stream, sha256, write to disk), without Kafka, pydantic or the dataflow.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp

from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.harness import KIB, BenchEnv, reset_simulator, simulator_stats
from claimx_flow.lab.bench.measure import settle_disk
from claimx_flow.lab.bench.progress import Phases, Update
from claimx_flow.lab.bench.report import Limit, StageResult
from claimx_flow.lab.bench.runner import expect, fill_run, run_until_drained
from claimx_flow.lab.simulator import Simulator, SimulatorConfig, SimulatorProcess
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.events import FIRST_PROJECT_ID
from claimx_flow.lab.simulator.signing import expiry_iso, now_millis
from claimx_flow.media.cache_spool import CacheSpool
from claimx_flow.media.downloader import CHUNK_BYTES
from claimx_flow.models import DownloadTask

DEFAULT_FILES = 10_000
BARE_TRIALS = 3
"""Runs of the bare fetch loop, the fastest kept: a limit is what the work can do at best on
this machine, and one run of two seconds on a shared machine can come in slow (a 5 MiB loop
once ran at 95 files/s, below the stage's 110)."""
URL_TTL_MS = 6 * 3600 * 1000


def bench(env: BenchEnv, phases: Phases) -> list[StageResult]:
    results = [_bench_size(env, phases, env.config.media_bytes, env.config.size(DEFAULT_FILES))]
    if env.config.large_files > 0:
        large = env.config.large_files if env.config.items is None else min(env.config.items, 20)
        results.append(_bench_size(env, phases, env.config.large_media_bytes, large))
    return results


def size_label(size: int) -> str:
    if size % (KIB * KIB) == 0:
        return f"{size // (KIB * KIB)}MiB"
    return f"{size // KIB}KiB" if size % KIB == 0 else f"{size}B"


def _bench_size(env: BenchEnv, phases: Phases, size: int, files: int) -> StageResult:
    label = size_label(size)
    sim = env.simulator(size)
    settings = env.stage_settings(f"download-{label}", media_bytes=size)
    workload = f"{label} x{settings.download_concurrency}"
    result = StageResult("download", workload, "files", files)
    tasks = download_tasks(sim, env.config.seed, files)
    update = phases.start(f"download {label}: preload", files)
    messages = [(t.kafka_key, t.to_json(), None) for t in tasks]
    kafka_io.produce(settings, settings.claimx_downloads_pending_topic, messages, update)
    bare_dir = env.workdir / f"bare-download-{label}"
    urls = [t.download_url for t in tasks]
    trials: list[Limit] = []
    for trial in range(1, BARE_TRIALS + 1):
        update = phases.start(f"download {label}: bare fetch loop {trial}/{BARE_TRIALS}", files)
        trials.append(
            asyncio.run(fetch_loop(urls, bare_dir, size, update, settings.download_concurrency))
        )
        shutil.rmtree(bare_dir, ignore_errors=True)
        settle_disk()
    raw = best_of(trials)
    reset_simulator(sim)
    cached, dlq = settings.claimx_downloads_cached_topic, settings.claimx_downloads_dlq_topic
    outputs = [cached, dlq, *settings.download_retry_topics]
    drained = run_until_drained(
        env, settings, "download", files, outputs, phases, f"download {label}"
    )
    fill_run(result, drained)
    result.set_raw(raw)
    stats = simulator_stats(sim)
    result.api_calls = int(stats["api_calls"])
    result.api_calls_per_item = result.api_calls / files
    result.bytes = int(stats["media_bytes_served"])
    result.bytes_per_s = drained.window.rate(result.bytes)
    result.extra["media_requests"] = stats["requests"].get("media_download", 0)
    expect(result, "files cached", drained.output(cached), files)
    expect(result, "files failed", sum(drained.output(t) for t in outputs[1:]), 0)
    shutil.rmtree(settings.effective_cache_dir, ignore_errors=True)
    return result


def download_tasks(sim: SimulatorProcess, seed: int, files: int) -> list[DownloadTask]:
    """Tasks for the first ``files`` media of consecutive projects, signed as the simulator
    signs its links (same secret, same path, systemDate/expires/sig)."""
    signer = Simulator(SimulatorConfig(seed=seed)).signer
    issued = now_millis()
    expires_at = expiry_iso(issued, URL_TTL_MS)
    tasks: list[DownloadTask] = []
    project = FIRST_PROJECT_ID
    while len(tasks) < files:
        for media_id in sim_data.media_ids(seed, project)[: files - len(tasks)]:
            url = signer.sign(sim.origin, f"/media/{project}/{media_id}", URL_TTL_MS, issued)
            item = sim_data.media_item(seed, media_id, url, expires_at)
            tasks.append(
                DownloadTask(
                    media_id=media_id,
                    project_id=project,
                    download_url=url,
                    file_name=item["mediaName"],
                    file_type=item["mediaType"],
                    expires_at=expires_at,
                    source_event_id=f"bench-{media_id}",
                )
            )
        project += 1
    return tasks


def best_of(trials: list[Limit]) -> Limit:
    """The fastest trial, saying it was the best of how many."""
    best = max(trials, key=lambda limit: limit.per_s)
    slowest = min(limit.per_s for limit in trials)
    return Limit(
        f"{best.what}, the fastest of {len(trials)} runs ({slowest:,.0f}-{best.per_s:,.0f}/s)",
        best.per_s,
        best.items,
        best.seconds,
    )


async def fetch_loop(
    urls: list[str], directory: Path, size: int, update: Update, concurrency: int
) -> Limit:
    """GET every URL at ``concurrency``: stream, sha256, write to a file, as the stage does.

    Bytes go through the stage's own ``CacheSpool``: a large file is hashed and written by a
    worker thread while the loop streams the others (hashlib and file writes release the GIL,
    so two cores share the work), a small one right on the loop. Hashing and writing on the
    loop instead would make the loop slower than the stage for large files, and a reference
    slower than the stage is no limit.
    """
    directory.mkdir(parents=True, exist_ok=True)
    queue = iter(enumerate(urls))
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            for index, url in queue:
                spool = CacheSpool(directory / f"{index}.part")
                async with session.get(url) as response:
                    if response.status != 200:
                        raise RuntimeError(f"bare fetch loop: HTTP {response.status}")
                    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                        await spool.add(chunk)
                await spool.commit(directory / f"{index}.bin")
                done += 1
                if done % 200 == 0:
                    update(done)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return Limit(
        f"a bare aiohttp fetch loop over the same {len(urls):,} URLs at concurrency "
        f"{concurrency} (stream, sha256, write each file through the stage's spool; "
        f"{size_label(size)} files)",
        done / seconds,
        done,
        round(seconds, 3),
    )
