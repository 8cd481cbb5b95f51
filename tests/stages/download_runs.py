"""What the download stage's process tests share: tasks for the simulator's media (signed as it
signs its links), produced to ``claimx.downloads.pending``, and where every task ended."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

from claimx_flow.config import Settings
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.media.cache_runs import cached_files
from claimx_flow.models import CachedDownload, DownloadTask, UploadResult
from tests.poison.harness import read_topic
from tests.simulator_fixtures import SIMULATOR_SEED


def media_tasks(sim: RunningSimulator, count: int, first_project: int) -> list[DownloadTask]:
    """``count`` tasks, each for a media file of its own, from consecutive projects."""
    tasks: list[DownloadTask] = []
    project = first_project
    while len(tasks) < count:
        for media_id in sim_data.media_ids(SIMULATOR_SEED, project)[: count - len(tasks)]:
            url = sim.simulator.signer.sign(sim.origin, f"/media/{project}/{media_id}", 3_600_000)
            tasks.append(
                DownloadTask(
                    media_id=str(media_id),
                    project_id=str(project),
                    download_url=url,
                    file_name=f"photo-{media_id}",
                    file_type=sim_data.media_type(SIMULATOR_SEED, media_id),
                    source_event_id=f"evt-{media_id}",
                )
            )
        project += 1
    return tasks


def expected_bytes(sim: RunningSimulator, media_id: str) -> bytes:
    return sim_data.media_content(SIMULATOR_SEED, int(media_id), sim.simulator.config.media_bytes)


def produce(settings: Settings, tasks: list[DownloadTask]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 0})
    for task in tasks:
        producer.produce(
            settings.claimx_downloads_pending_topic, key=task.kafka_key, value=task.to_json()
        )
    assert producer.flush(30) == 0


def cached(settings: Settings) -> list[CachedDownload]:
    read = read_topic(settings, settings.claimx_downloads_cached_topic)
    return [CachedDownload.from_json(message.value or b"") for message in read]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@dataclass
class Outcomes:
    """Every message the download stage wrote, by the media id it is about."""

    cached: dict[str, list[CachedDownload]] = field(default_factory=lambda: defaultdict(list))
    retried: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dead: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed_results: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def read(cls, settings: Settings) -> Outcomes:
        outcomes = cls()
        for download in cached(settings):
            outcomes.cached[download.media_id].append(download)
        for topic in settings.download_retry_topics:
            for message in read_topic(settings, topic):
                outcomes.retried[str(json.loads(message.value or b"")["media_id"])] += 1
        for message in read_topic(settings, settings.claimx_downloads_dlq_topic):
            outcomes.dead[str(json.loads(message.value or b"")["media_id"])] += 1
        for message in read_topic(settings, settings.claimx_downloads_results_topic):
            result = UploadResult.from_json(message.value or b"")
            if result.status == "failed":
                outcomes.failed_results[result.media_id] += 1
        return outcomes

    def where(self, media_id: str) -> list[str]:
        """The places the media file's task ended: exactly one, for the law."""
        places = [
            ("cached", media_id in self.cached),
            ("retry", media_id in self.retried),
            ("dlq", media_id in self.dead),
        ]
        return [name for name, found in places if found]

    def duplicates(self) -> int:
        """Messages beyond the first for one media file (the replays recovery allows)."""
        counts = [len(v) for v in self.cached.values()]
        counts += [*self.retried.values(), *self.dead.values()]
        return sum(count - 1 for count in counts)


def orphans(settings: Settings, outcomes: Outcomes) -> list[Path]:
    """Files in the cache that no cached message names (partial files included)."""
    named = {Path(d.local_path) for downloads in outcomes.cached.values() for d in downloads}
    return sorted(p for p in cached_files(settings.effective_cache_dir) if p not in named)


def errors(log: str) -> list[str]:
    """The log's ERROR lines (a graceful stop makes none: the HTTP sessions close at exit)."""
    return [line for line in log.splitlines() if " ERROR " in line]
