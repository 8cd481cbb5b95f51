"""The local stack: a set of services started together, remembered in a state file.

``claimx stack up`` and the pytest fixtures both go through here, so what the tests run is what a
developer runs. The state file lets ``status`` and ``down`` find servers that an earlier command
started; an env file lets a shell pick up their addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from claimx_flow.config import STACK_STATE_FILE, stack_directory
from claimx_flow.lab.process import is_alive, stop_process_group
from claimx_flow.lab.stack.azurite import AzuriteService
from claimx_flow.lab.stack.kafka import KafkaService, broker_reachable
from claimx_flow.lab.stack.services import RunningService, Service
from claimx_flow.lab.stack.simulator_service import SimulatorService, wants_simulator

ENV_FILE = "env"


def stack_dir() -> Path:
    return stack_directory().resolve()


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    endpoint: str
    alive: bool
    ready: bool
    note: str = ""


def default_services() -> list[Service]:
    """The services a developer's stack runs; an external Kafka replaces the local one."""
    services: list[Service] = []
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        port = os.environ.get("CLAIMX_KAFKA_PORT")
        services.append(KafkaService(port=int(port) if port else None))
    if wants_simulator():
        services.append(SimulatorService())
    return services


class Stack:
    """Services started by this project, recorded under ``directory``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or stack_dir()

    @property
    def state_path(self) -> Path:
        return self.directory / STACK_STATE_FILE

    @property
    def env_path(self) -> Path:
        return self.directory / ENV_FILE

    def running(self) -> dict[str, RunningService]:
        if not self.state_path.exists():
            return {}
        data = json.loads(self.state_path.read_text())
        return {name: RunningService.from_json(item) for name, item in data.items()}

    def live_env(self) -> dict[str, str]:
        """The addresses of the services that are running now, as environment variables."""
        env: dict[str, str] = {}
        for running in self.running().values():
            if is_alive(running.pid):
                env.update(running.env)
        return env

    def up(self, services: Sequence[Service]) -> dict[str, RunningService]:
        """Start each service not already running; on any failure stop what this call started."""
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {n: s for n, s in self.running().items() if is_alive(s.pid)}
        started: list[RunningService] = []
        try:
            for service in services:
                if service.name in state:
                    continue
                workdir = Path(tempfile.mkdtemp(prefix=f"claimx-{service.name}-"))
                running = service.start(workdir)
                started.append(running)
                state[service.name] = running
                self._save(state)
        except BaseException:
            for running in started:
                _stop(running)
            self._save({n: s for n, s in state.items() if s not in started})
            raise
        return state

    def status(self) -> list[ServiceStatus]:
        statuses = []
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        running = self.running()
        if external and "kafka" not in running:
            statuses.append(
                ServiceStatus(
                    "kafka",
                    None,
                    external,
                    alive=True,
                    ready=broker_reachable(external),
                    note="external (KAFKA_BOOTSTRAP_SERVERS)",
                )
            )
        for service in running.values():
            alive = is_alive(service.pid)
            ready = alive and _probe(service)
            statuses.append(
                ServiceStatus(service.name, service.pid, service.endpoint, alive, ready)
            )
        return statuses

    def down(self) -> list[str]:
        """Stop every recorded service and remove its data; returns the names stopped."""
        stopped = []
        for running in self.running().values():
            _stop(running)
            stopped.append(running.name)
        self.state_path.unlink(missing_ok=True)
        self.env_path.unlink(missing_ok=True)
        return stopped

    def _save(self, state: dict[str, RunningService]) -> None:
        self.state_path.write_text(json.dumps({n: s.to_json() for n, s in state.items()}, indent=2))
        lines = [f"export {key}={value}" for s in state.values() for key, value in s.env.items()]
        self.env_path.write_text("\n".join(lines) + ("\n" if lines else ""))


# Every kind of service the stack knows, by name, so a later command can probe it.
SERVICE_KINDS: dict[str, Callable[[], Service]] = {
    "kafka": KafkaService,
    "simulator": SimulatorService,
    "azurite": AzuriteService,
}


def _probe(running: RunningService) -> bool:
    kind = SERVICE_KINDS.get(running.name)
    return kind is not None and kind().is_ready(running)


def _stop(running: RunningService) -> None:
    try:
        stop_process_group(running.pid)
    finally:
        workdir = Path(running.workdir)
        if workdir.name.startswith(f"claimx-{running.name}-"):
            shutil.rmtree(workdir, ignore_errors=True)
