"""Running the stage dataflows as processes, each with recovery on.

What ``claimx demo``, the end-to-end tests and the chaos harness start is exactly what a pod
runs: ``python -m bytewax.run dataflows.<stage>`` with a recovery directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from claimx_flow import catalog
from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.lab.process import (
    LOOPBACK,
    free_port,
    start_detached,
    stop_process_groups,
)
from claimx_flow.startup.recovery import init_recovery, kafka_cluster_id


def stage_command(
    settings: Settings, stage: str, workers: int = 1, cluster_id: str | None = None
) -> list[str]:
    """``python -m bytewax.run dataflows.<stage>`` with the stage's recovery directory."""
    try:
        module = catalog.stage(stage).module
    except KeyError as exc:
        raise ClaimxError(str(exc.args[0])) from None
    command = [
        sys.executable,
        "-m",
        "bytewax.run",
        f"{module}:flow",
        "-r",
        str(init_recovery(settings, stage, cluster_id)),
        "-s",
        str(settings.claimx_snapshot_interval_seconds),
        "-b",
        str(settings.claimx_backup_interval_seconds),
    ]
    if workers > 1:
        command += ["-w", str(workers)]
    return command


@dataclass
class Pipeline:
    """Stage processes started together, logging to ``log_dir``.

    A stage may run as a Bytewax cluster of several processes (``-i``/``-a``) on this machine;
    like a StatefulSet, the cluster is started, stopped and restarted as a whole.
    """

    settings: Settings
    env: Mapping[str, str]
    log_dir: Path
    cwd: Path = field(default_factory=Path.cwd)
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    health_ports: dict[str, list[int]] = field(default_factory=dict)
    cluster_id: str | None = None
    """The Kafka cluster's id, read at the first start: a restart during an outage needs none."""

    def start(
        self, stages: Iterable[str] = STAGE_NAMES, workers: int = 1, processes: int = 1
    ) -> None:
        if self.cluster_id is None:
            self.cluster_id = kafka_cluster_id(self.settings)
        cluster = self.cluster_id
        for stage in stages:
            command = stage_command(self.settings, stage, workers, cluster)
            peers = [f"{LOOPBACK}:{free_port()}" for _ in range(processes)]
            started = []
            ports = self._health_ports(processes)
            for index in range(processes):
                mesh = ["-i", str(index), "-a", ";".join(peers)] if processes > 1 else []
                env = {
                    **self.env,
                    "PYTHONUNBUFFERED": "1",
                    "CLAIMX_HEALTH_HOST": LOOPBACK,
                    "CLAIMX_HEALTH_PORT": str(ports[index]),
                }
                started.append(
                    start_detached(
                        [*command, *mesh],
                        log_path=self.log_path(stage, index, processes),
                        cwd=self.cwd,
                        env=env,
                        die_with_parent=True,  # stages never outlive what runs them
                    )
                )
            self.processes[stage] = started
            self.health_ports[stage] = ports
            self.shapes[stage] = (workers, processes)

    def _health_ports(self, processes: int) -> list[int]:
        """Free ports on this machine: several stages and processes share one host here."""
        fixed = self.settings.claimx_health_port
        if fixed and processes == 1:
            return [fixed]
        return [free_port() for _ in range(processes)]

    def log_path(self, stage: str, index: int, processes: int) -> Path:
        return self.log_dir / (f"{stage}.log" if processes == 1 else f"{stage}-{index}.log")

    def dead(self) -> list[str]:
        """Stages with a process that is no longer running."""
        return [
            stage
            for stage, group in self.processes.items()
            if any(p.poll() is not None for p in group)
        ]

    def exit_codes(self, stage: str) -> tuple[int | None, ...]:
        """Each process's exit status (negative: the signal), None while it runs.

        ``Popen.poll`` reaps and keeps the status; a bare ``waitpid`` elsewhere would reap it
        first and leave ``Popen`` reporting 0 for any exit.
        """
        return tuple(p.poll() for p in self.processes.get(stage, []))

    def ended_logs(self, stage: str) -> list[Path]:
        """The logs of the stage's processes that have ended (not of peers still running)."""
        group = self.processes.get(stage, [])
        return [
            self.log_path(stage, i, len(group)) for i, p in enumerate(group) if p.poll() is not None
        ]

    def kill(self, stage: str, index: int | None = None) -> None:
        """SIGKILL one process of the stage (or all of them): a crash, not a stop."""
        group = self.processes.get(stage, [])
        for i, process in enumerate(group):
            if (index is None or i == index) and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def restart(self, stage: str) -> None:
        """Stop what is left of the stage's cluster and start all of it again."""
        workers, processes = self.shapes.get(stage, (1, 1))
        stop_process_groups(_running(self.processes.pop(stage, [])), grace_s=10)
        self.start([stage], workers, processes)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop every stage gracefully, all at once (clusters finish together)."""
        stop_process_groups(_running([p for g in self.processes.values() for p in g]), grace_s)
        self.processes.clear()

    def logs(self, stage: str) -> list[Path]:
        return sorted(self.log_dir.glob(f"{stage}.log")) + sorted(
            self.log_dir.glob(f"{stage}-*.log")
        )


def _running(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    """The pids of those not yet reaped. A reaped one's pid may already be another process's
    (pids wrap in minutes on a busy machine), so it is never signalled again."""
    return [p.pid for p in processes if p.poll() is None]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings (secrets included)."""
    env = dict(os.environ)
    for name, value in settings:
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[name.upper()] = str(value)
    return env
