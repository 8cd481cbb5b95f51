"""The ClaimX API simulator as a service of the local stack.

It stands in for the real API on a developer's machine; its credentials are the simulator's
own development ones, which the stack hands to the pipeline through the environment.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from claimx_flow.lab.process import (
    LOOPBACK,
    free_port,
    require_free_port,
    start_detached,
    wait_until,
)
from claimx_flow.lab.simulator.server import DEFAULT_BASE_PATH, DEFAULT_PASSWORD, DEFAULT_USERNAME
from claimx_flow.lab.stack.services import RunningService

READY_TIMEOUT_S = 30.0


class SimulatorService:
    name = "simulator"

    def __init__(self, seed: int = 0, port: int | None = None) -> None:
        self._seed = seed
        self._port = port

    def start(self, workdir: Path) -> RunningService:
        # Imported here: the simulator's runner uses the stack's process helpers itself.
        from claimx_flow.lab.simulator.runner import PASSWORD_ENV

        port = require_free_port(self._port, "simulator") if self._port else free_port()
        log = workdir / "simulator.log"
        command = [
            sys.executable,
            "-m",
            "claimx_flow.lab.simulator",
            *("--host", LOOPBACK, "--port", str(port), "--seed", str(self._seed)),
        ]
        process = start_detached(
            command, log_path=log, cwd=workdir, env={PASSWORD_ENV: DEFAULT_PASSWORD}
        )
        origin = f"http://{LOOPBACK}:{port}"
        running = RunningService(
            name=self.name,
            pid=process.pid,
            endpoint=origin + DEFAULT_BASE_PATH,
            env={
                "CLAIMX_API_URL": origin + DEFAULT_BASE_PATH,
                "CLAIMX_API_USERNAME": DEFAULT_USERNAME,
                "CLAIMX_API_PASSWORD": DEFAULT_PASSWORD,
            },
            log=str(log),
            workdir=str(workdir),
            extra={"origin": origin, "seed": str(self._seed)},
        )
        wait_until(
            lambda: self.is_ready(running),
            timeout_s=READY_TIMEOUT_S,
            what=f"simulator on {origin}",
            pid=process.pid,
            log_path=log,
        )
        return running

    def is_ready(self, running: RunningService) -> bool:
        try:
            with urllib.request.urlopen(f"{running.extra['origin']}/health", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, KeyError):
            return False


def wants_simulator() -> bool:
    """Start the simulator unless a real ClaimX API is configured."""
    return not os.environ.get("CLAIMX_API_URL")
