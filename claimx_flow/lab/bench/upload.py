"""upload to local storage from real files in the cache, beside a bare store loop.

The cache holds real files (the simulator's content for each media id) and the input topic the
cached-download messages the download stage would have written for them. The bare loop stores
every file with the local store's own functions, as the upload stage does (hard-linked when the
cache and the store share a filesystem, else copied; read and sha256 once; renamed into place)
on as many threads as ``asyncio.to_thread`` uses here, and makes them durable with one
``syncfs`` at the end: no more syncs than the stage makes (one per worker batch, which holds up
to ``UPLOAD_BATCH_SIZE`` files from each partition the worker reads), and no Kafka, Delta,
dataflow or cache release. It runs first: the stage releases the cache files it has uploaded.

Until 2026-12-05 the loop copied every file and fsynced each, more disk work than the stage
does since it links and syncs per batch; the stage then came out at 98% of it and over 105%
(refused), since a loop doing more work than the stage is no upper bound.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.download import size_label
from claimx_flow.lab.bench.harness import BenchEnv
from claimx_flow.lab.bench.measure import settle_disk
from claimx_flow.lab.bench.progress import Phases, Update
from claimx_flow.lab.bench.report import Limit, StageResult
from claimx_flow.lab.bench.runner import expect, fill_run, run_until_drained
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.events import FIRST_PROJECT_ID
from claimx_flow.media.downloader import cache_file
from claimx_flow.models import CachedDownload
from claimx_flow.storage.local import store_atomically, sync_filesystem

DEFAULT_FILES = 10_000
_CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}


def bench(env: BenchEnv, phases: Phases) -> list[StageResult]:
    size, files = env.config.media_bytes, env.config.size(DEFAULT_FILES)
    settings = env.stage_settings("upload")
    result = StageResult("upload", f"local-{size_label(size)}", "files", files)
    update = phases.start("upload: files into the cache", files)
    cached = cached_downloads(settings.effective_cache_dir, env.config.seed, files, size, update)
    update = phases.start("upload: preload", files)
    messages = [(c.kafka_key, c.to_json(), None) for c in cached]
    kafka_io.produce(settings, settings.claimx_downloads_cached_topic, messages, update)
    update = phases.start("upload: bare store loop", files)
    settle_disk()
    raw = store_loop([Path(c.local_path) for c in cached], env.workdir / "bare-upload", update)
    settle_disk()
    results, dlq = settings.claimx_downloads_results_topic, settings.claimx_downloads_dlq_topic
    outputs = [results, dlq, *settings.download_retry_topics]
    drained = run_until_drained(env, settings, "upload", files, outputs, phases, "upload")
    fill_run(result, drained)
    result.set_raw(raw)
    result.bytes = files * size
    result.bytes_per_s = drained.window.rate(result.bytes)
    expect(result, "upload results", drained.output(results), files)
    expect(result, "uploads failed", sum(drained.output(t) for t in outputs[1:]), 0)
    result.outputs.update(kafka_io.delta_rows(settings.tables_dir))
    expect(result, "claimx_attachments rows", result.outputs.get("claimx_attachments", 0), files)
    left = [p for p in settings.effective_cache_dir.glob("*.bin")]
    expect(result, "cache files left behind", len(left), 0)
    return [result]


def cached_downloads(
    cache_dir: Path, seed: int, files: int, size: int, update: Update
) -> list[CachedDownload]:
    """Real cache files and the messages that announce them."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    out: list[CachedDownload] = []
    project = FIRST_PROJECT_ID
    while len(out) < files:
        for media_id in sim_data.media_ids(seed, project)[: files - len(out)]:
            content = sim_data.media_content(seed, media_id, size)
            path = cache_file(cache_dir, str(media_id))
            path.write_bytes(content)
            item = sim_data.media_item(seed, media_id, "https://127.0.0.1/unused", "")
            out.append(
                CachedDownload(
                    media_id=media_id,
                    project_id=project,
                    download_url=f"http://127.0.0.1/media/{project}/{media_id}",
                    file_name=item["mediaName"],
                    file_type=item["mediaType"],
                    source_event_id=f"bench-{media_id}",
                    local_path=str(path),
                    bytes=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    content_type=_CONTENT_TYPES.get(item["mediaType"], "application/octet-stream"),
                    downloaded_at=now,
                )
            )
            if len(out) % 500 == 0:
                update(len(out))
        project += 1
    return out


def store_loop(sources: list[Path], directory: Path, update: Update) -> Limit:
    """Store every file as the local store does, on ``asyncio.to_thread``'s default pool size,
    then one ``syncfs``."""
    directory.mkdir(parents=True, exist_ok=True)
    threads = min(32, (os.cpu_count() or 1) + 4)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(_store, sources, [directory] * len(sources)), 1):
            if done % 500 == 0:
                update(done)
    sync_filesystem(directory)
    seconds = time.perf_counter() - started
    shutil.rmtree(directory, ignore_errors=True)
    return Limit(
        f"a bare store loop over the same {len(sources):,} files on {threads} threads "
        "(the local store's own link-or-copy, sha256 and rename; one syncfs at the end)",
        len(sources) / seconds,
        len(sources),
        round(seconds, 3),
    )


def _store(source: Path, directory: Path) -> int:
    return store_atomically(source, directory / source.name, None)
