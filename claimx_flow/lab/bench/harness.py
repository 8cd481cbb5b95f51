"""The bench's world: a broker, the API simulator, uuid-prefixed topics, and stage settings.

Every stage benchmark gets topics of its own (``bench-<uuid>.<topic>``), a data directory of
its own and a fresh simulator counter, so runs never see each other's messages or rows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from claimx_flow.config import Settings, load_settings
from claimx_flow.kafka.topics import admin_client, ensure_topics, pipeline_topics
from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.simulator import (
    Faults,
    SimulatorConfig,
    SimulatorProcess,
    start_subprocess,
)
from claimx_flow.lab.stack import KafkaService, RunningService

KIB = 1024


@dataclass(frozen=True)
class BenchConfig:
    """What to run and how big. ``items`` overrides every stage's own default size."""

    seed: int = 8
    items: int | None = None
    partitions: int = 6
    media_bytes: int = 64 * KIB
    large_media_bytes: int = 5 * KIB * KIB
    large_files: int = 200
    concurrency: int = 20
    retry_spread_s: float = 10.0
    retry_lead_s: float = 15.0
    api_latency_ms: float = 0.0
    """Time the simulator takes to answer each API call (media files are not slowed): a
    ClaimX API across a network rather than beside the stage."""
    latency_seconds: float = 4.0
    stage_timeout_s: float = 300.0
    own_broker: bool = False
    keep: bool = False
    profile_dir: Path | None = None
    """Where to write py-spy profiles of each stage process (None: no profiling)."""
    workers: int = 1
    """Worker threads of each stage process (``-w``)."""
    processes: int = 1
    """Processes of each stage: a Bytewax cluster on this machine (``-i``/``-a``)."""
    scale_to: int = 0
    """Also run ingest and enrich file-heavy as a cluster of this many processes and compare
    with their one-process rows (0: no scaling rows)."""

    def size(self, default: int) -> int:
        return self.items if self.items is not None else default

    def profile(self, label: str) -> Path | None:
        if self.profile_dir is None:
            return None
        shape = f"-x{self.processes}" if self.processes > 1 else ""
        return self.profile_dir / (label.replace(" ", "-").replace("/", "-") + shape + ".txt")


@dataclass
class BenchEnv:
    """Broker and simulators for a bench run; ``with BenchEnv(config) as env: …``."""

    config: BenchConfig
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="claimx-bench-")))
    bootstrap: str = ""
    broker: RunningService | None = None
    simulators: dict[int, SimulatorProcess] = field(default_factory=dict)
    prefixes: list[str] = field(default_factory=list)
    broker_note: str = ""

    def __enter__(self) -> BenchEnv:
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external and not self.config.own_broker:
            self.bootstrap, self.broker_note = external, f"reused {external}"
        else:
            self.broker = KafkaService().start(self.workdir / "kafka")
            self.bootstrap = self.broker.endpoint
            self.broker_note = f"dedicated local broker {self.bootstrap}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def simulator(self, media_bytes: int) -> SimulatorProcess:
        """A simulator serving media of ``media_bytes`` (started once per size)."""
        running = self.simulators.get(media_bytes)
        if running is None:
            config = SimulatorConfig(
                seed=self.config.seed,
                media_bytes=media_bytes,
                faults=Faults(latency_ms=self.config.api_latency_ms),
            )
            log = self.workdir / f"simulator-{media_bytes}.log"
            running = start_subprocess(config, log_path=log)
            self.simulators[media_bytes] = running
        return running

    def stage_settings(self, name: str, media_bytes: int | None = None, **extra: Any) -> Settings:
        """Settings for one run: its own topics (created here), data dir and consumer groups."""
        prefix = f"bench-{name}-{uuid.uuid4().hex[:8]}."
        self.prefixes.append(prefix)
        sim = self.simulator(media_bytes or self.config.media_bytes)
        sim_config = SimulatorConfig(seed=self.config.seed)
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.bootstrap,
            "kafka_consumer_group_prefix": prefix + "claimx",
            "claimx_api_url": sim.api_url,
            "claimx_api_username": sim_config.username,
            "claimx_api_password": sim_config.password,
            "claimx_data_dir": self.workdir / prefix.rstrip("."),
            "claimx_stop_at_end": True,
            "claimx_topic_partitions": self.config.partitions,
            "download_concurrency": self.config.concurrency,
            **{field: prefix + default for field, default in _TOPIC_DEFAULTS.items()},
            **extra,
        }
        settings = load_settings(**values)
        ensure_topics(admin_client(settings), pipeline_topics(settings))
        return settings

    def scratch_topic(self, settings: Settings, name: str) -> str:
        prefix = settings.kafka_consumer_group_prefix.removesuffix("claimx")
        return kafka_io.create_topic(settings, prefix + name, self.config.partitions)

    def close(self) -> None:
        for running in self.simulators.values():
            running.stop()
        self.simulators.clear()
        if self.broker is not None:
            stop_process_group(self.broker.pid)
            self.broker = None
        elif self.bootstrap:
            self._delete_topics()
        if not self.config.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _delete_topics(self) -> None:
        settings = load_settings(kafka_bootstrap_servers=self.bootstrap)
        for prefix in self.prefixes:
            try:
                kafka_io.delete_topics(settings, prefix)
            except Exception:  # best effort: a reused broker keeps some litter
                continue


_TOPIC_DEFAULTS = {
    "claimx_events_topic": "claimx.events.raw",
    "claimx_events_dlq_topic": "claimx.events.dlq",
    "claimx_enrichment_pending_topic": "claimx.enrichment.pending",
    "claimx_enrichment_dlq_topic": "claimx.enrichment.dlq",
    "claimx_downloads_pending_topic": "claimx.downloads.pending",
    "claimx_downloads_cached_topic": "claimx.downloads.cached",
    "claimx_downloads_results_topic": "claimx.downloads.results",
    "claimx_downloads_dlq_topic": "claimx.downloads.dlq",
}


def simulator_stats(sim: SimulatorProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{sim.origin}/_admin/stats", timeout=10) as response:
        stats: dict[str, Any] = json.loads(response.read())
        return stats


def reset_simulator(sim: SimulatorProcess) -> None:
    request = urllib.request.Request(f"{sim.origin}/_admin/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10):
        pass
