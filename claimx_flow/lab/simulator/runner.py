"""Three ways to run the simulator: in a background thread (tests), in the foreground until a
signal (the CLI), or as a child process (``python -m claimx_flow.lab.simulator``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from claimx_flow.errors import StackError
from claimx_flow.lab.process import LOOPBACK, free_port, wait_until
from claimx_flow.lab.simulator.app import build_app
from claimx_flow.lab.simulator.server import Simulator, SimulatorConfig
from claimx_flow.lab.simulator.stats import Stats

PASSWORD_ENV = "CLAIMX_SIMULATOR_PASSWORD"
# Hanging ("timeout") requests must not hold up a stop for long.
_SHUTDOWN_TIMEOUT_S = 1.0


async def _start(simulator: Simulator, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        build_app(simulator),
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)


@dataclass
class Endpoint:
    """Where a running simulator listens."""

    host: str
    port: int
    base_path: str

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What ``CLAIMX_API_URL`` should be set to."""
        return self.origin + self.base_path


class RunningSimulator(Endpoint):
    """A simulator on a background thread of this process; ``stop()`` or use ``with``."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        super().__init__(host, port, simulator.config.base_path)
        self.simulator = simulator
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="claimx-simulator", daemon=True)

    @property
    def stats(self) -> Stats:
        return self.simulator.stats

    def set_faults(self, **changes: Any) -> None:
        """See ``Simulator.set_faults``."""
        self.simulator.set_faults(**changes)

    def reset(self) -> None:
        self.simulator.reset()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner, self.port = await _start(self.simulator, self.host, self.port)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self, timeout_s: float = 10.0) -> RunningSimulator:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise StackError(f"simulator not ready after {timeout_s:.0f}s")
        if self._failure is not None:
            raise StackError(f"simulator could not start: {self._failure}") from self._failure
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(
    config: SimulatorConfig | None = None, host: str = LOOPBACK, port: int = 0
) -> RunningSimulator:
    """Serve a new simulator from a daemon thread; port 0 picks a free one."""
    return RunningSimulator(Simulator(config), host, port).start()


def serve_forever(
    config: SimulatorConfig,
    host: str = LOOPBACK,
    port: int = 8090,
    on_ready: Callable[[Endpoint], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM."""
    asyncio.run(_serve_until_signal(Simulator(config), host, port, on_ready))


async def _serve_until_signal(
    simulator: Simulator, host: str, port: int, on_ready: Callable[[Endpoint], None] | None
) -> None:
    try:
        runner, bound = await _start(simulator, host, port)
    except OSError as exc:
        raise StackError(f"simulator: cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(Endpoint(host, bound, simulator.config.base_path))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class SimulatorProcess(Endpoint):
    """A simulator in a child process, for tests that need it outside their own interpreter."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, base: str) -> None:
        super().__init__(host, port, base)
        self.process = process

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.origin}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)


def start_subprocess(
    config: SimulatorConfig | None = None,
    host: str = LOOPBACK,
    port: int | None = None,
    log_path: Path | None = None,
    timeout_s: float = 20.0,
) -> SimulatorProcess:
    """Run ``python -m claimx_flow.lab.simulator`` and return once ``/health`` answers."""
    config = config or SimulatorConfig()
    port = port if port is not None else free_port()
    command = [
        sys.executable,
        "-m",
        "claimx_flow.lab.simulator",
        *("--host", host, "--port", str(port), "--seed", str(config.seed)),
        *("--username", config.username, "--base-path", config.base_path or "/"),
        *("--media-bytes", str(config.media_bytes), "--url-ttl-ms", str(config.url_ttl_ms)),
        *("--faults", json.dumps(config.faults.model_dump(mode="json"))),
    ]
    # The password travels in the environment, not on a command line anyone can list.
    env = {**os.environ, PASSWORD_ENV: config.password}
    if config.secret:
        env["CLAIMX_SIMULATOR_SECRET"] = config.secret
    log = log_path.open("ab") if log_path is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
    finally:
        if log_path is not None and not isinstance(log, int):
            log.close()
    running = SimulatorProcess(process, host, port, config.base_path)
    try:
        wait_until(
            running.healthy,
            timeout_s=timeout_s,
            what="claimx simulator",
            pid=process.pid,
            log_path=log_path,
        )
    except StackError:
        running.stop()
        raise
    return running
