"""One stage's dataflow process, started as the pipeline starts it and watched while it runs.

Consumption is read from the stage's own ``/metrics`` (``claimx_consumed_messages_total``) ten
times a second until it moves (then once a second): the last scrape before it moved marks the
start of the processing window, so interpreter start-up, imports, recovery set-up and Kafka
metadata are not counted. Peak memory is the kernel's high-water mark of the process's own
address space (``VmHWM``, the last reading before it exits; see ``measure.memory_bytes``),
with ``VmRSS`` samples beside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.lab.bench.measure import memory_bytes
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import LOOPBACK

SAMPLE_EVERY_S = 0.1
SCRAPE_EVERY_S = 1.0
_CONSUMED = "claimx_consumed_messages_total{"


class StageFailed(ClaimxError):
    """The stage process exited with an error or did not finish in time."""


@dataclass
class StageRun:
    """What the process did: wall time start → exit, exit code, peak RSS, CPU time."""

    stage: str
    wall_s: float = 0.0
    exit_code: int | None = None
    peak_rss_bytes: int = 0
    cpu_s: float = 0.0
    first_consumed_at: float | None = None
    consumed: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    stopped_by_harness: bool = False
    last_metrics: str = ""
    """The stage's ``/metrics`` as last scraped (moments before it exited)."""

    def peak_rss_between(self, start: float, end: float) -> int:
        return max((rss for at, rss in self.rss_samples if start <= at <= end), default=0)


class StageProcess:
    """``python -m bytewax.run dataflows.<stage>:flow`` with recovery, via ``Pipeline``: one
    process, or a Bytewax cluster of ``processes`` (``-i``/``-a``) on this machine, watched as
    one stage (consumption summed, memory per process, CPU summed)."""

    def __init__(
        self,
        settings: Settings,
        stage: str,
        log_dir: Path,
        profile: Path | None = None,
        workers: int = 1,
        processes: int = 1,
    ) -> None:
        self.stage = stage
        self._workers = workers
        self._processes = processes
        self._profile = profile
        self._profilers: list[subprocess.Popen[bytes]] = []
        self.pipeline = Pipeline(settings, settings_env(settings), log_dir)
        self.run = StageRun(stage)
        self._pids: list[int] = []
        self._ports: list[int] = []
        self._exits: dict[int, int] = {}
        self._started = 0.0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True, name="bench-sampler")

    def start(self) -> StageProcess:
        self.pipeline.start([self.stage], workers=self._workers, processes=self._processes)
        self._pids = [p.pid for p in self.pipeline.processes[self.stage]]
        self._ports = self.pipeline.health_ports[self.stage]
        self._started = time.time()
        self._sampler.start()
        if self._profile is not None:
            for index, pid in enumerate(self._pids):
                path = self._profile
                if len(self._pids) > 1:
                    path = path.with_name(f"{path.stem}-{index}{path.suffix}")
                self._profilers.append(start_profiler(pid, path))
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every process answers ``/health/ready`` with 200 (its workers poll Kafka)."""
        waiting = set(self._ports)

        def ready() -> bool:
            waiting.difference_update(
                [p for p in waiting if self._get(p, "/health/ready", 1.0) is not None]
            )
            return not waiting

        self.wait_for(ready, timeout_s, during="start-up", late="not ready")

    def wait_for(
        self, done: Callable[[], bool], timeout_s: float, *, during: str, late: str
    ) -> None:
        """Until ``done()`` holds while the stage runs; ``StageFailed`` with its log's tail if
        it exits first (``exited during <during>``) or time runs out (``<late> after …``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._reap()
            if self._exits:
                raise StageFailed(f"{self.stage} exited during {during}: {self.log_tail()}")
            if done():
                return
            time.sleep(SAMPLE_EVERY_S)
        raise StageFailed(f"{self.stage} {late} after {timeout_s:.0f}s: {self.log_tail()}")

    def wait(
        self,
        timeout_s: float,
        *,
        stop_when: Callable[[], bool] | None = None,
        on_poll: Callable[[StageRun], None] | None = None,
    ) -> StageRun:
        """Until every process exits (by itself, or after SIGTERM once ``stop_when`` holds)."""
        deadline = time.monotonic() + timeout_s
        while self.run.exit_code is None:
            if time.monotonic() > deadline:
                self.pipeline.stop(grace_s=10)
                raise StageFailed(f"{self.stage} did not finish in {timeout_s:.0f}s")
            if on_poll is not None:
                on_poll(self.run)
            if stop_when is not None and not self.run.stopped_by_harness and stop_when():
                self.stop()
            time.sleep(SAMPLE_EVERY_S)
            self._reap()
        self._done.set()
        self._sampler.join(2)
        for profiler in self._profilers:
            profiler.wait(30)
        if self.run.exit_code != 0:
            raise StageFailed(f"{self.stage} exited with {self.run.exit_code}: {self.log_tail()}")
        return self.run

    def stop(self) -> None:
        """SIGTERM: the stage's graceful stop (inputs end, sinks flush, exit 0)."""
        self.run.stopped_by_harness = True
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)

    def kill(self) -> None:
        self._done.set()
        self.pipeline.stop(grace_s=5)

    def log_tail(self, lines: int = 12) -> str:
        text = "\n".join(p.read_text(errors="replace") for p in self.pipeline.logs(self.stage))
        return "\n".join(text.splitlines()[-lines:])

    def _reap(self) -> None:
        """Collect exited processes; the run is over once all have, failed if any failed
        (one process of a cluster exiting alone is a failure: its peers cannot finish)."""
        if self.run.exit_code is not None:
            return
        for index, pid in enumerate(self._pids):
            if pid in self._exits:
                continue
            try:
                reaped, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if reaped == 0:
                continue
            code = os.waitstatus_to_exitcode(status)
            self._exits[pid] = code
            self.run.cpu_s += usage.ru_utime + usage.ru_stime
            self.pipeline.processes[self.stage][index].returncode = code
        if len(self._exits) == len(self._pids):
            self.run.wall_s = time.time() - self._started
            failed = [code for code in self._exits.values() if code != 0]
            self.run.exit_code = failed[0] if failed else 0

    def _sample(self) -> None:
        """RSS and its high-water mark every 0.1 s (the largest process's); ``/metrics`` every
        0.1 s until the stage consumes, then every second (rendering the registry costs the
        stage CPU; the scrapes are only progress)."""
        last_zero, next_scrape = self._started, 0.0
        while not self._done.is_set():
            now = time.time()
            readings = [read for read in map(memory_bytes, self._pids) if read is not None]
            if readings:
                self.run.rss_samples.append((now, max(rss for rss, _ in readings)))
                peak = max(high for _, high in readings)
                self.run.peak_rss_bytes = max(self.run.peak_rss_bytes, peak)
            if now < next_scrape:
                self._done.wait(SAMPLE_EVERY_S)
                continue
            consumed = self._consumed()
            started = self.run.first_consumed_at is not None
            next_scrape = now + (SCRAPE_EVERY_S if started else SAMPLE_EVERY_S)
            if consumed is not None:
                if consumed == 0:
                    last_zero = now
                elif self.run.first_consumed_at is None:
                    self.run.first_consumed_at = last_zero
                self.run.consumed = max(self.run.consumed, consumed)
            self._done.wait(SAMPLE_EVERY_S)

    def _consumed(self) -> int | None:
        """Messages consumed by every process, or None while one of them does not answer."""
        total = 0.0
        bodies = []
        for port in self._ports:
            body = self._get(port, "/metrics", 0.5)
            if body is None:
                return None
            bodies.append(body)
            for line in body.splitlines():
                if line.startswith(_CONSUMED):
                    total += float(line.rsplit(" ", 1)[1])
        self.run.last_metrics = "\n".join(bodies)
        return int(total)

    def _get(self, port: int, path: str, timeout_s: float) -> str | None:
        url = f"http://{LOOPBACK}:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError, ValueError):
            return None


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` until it exits, as collapsed stacks (one per thread) in
    ``output``. py-spy is not a dependency: ``pip install py-spy`` to profile."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise StageFailed("--profile needs py-spy: pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [py_spy, "record", "--pid", str(pid), "--rate", "200", "--threads"]
    command += ["--format", "raw", "--output", str(output), "--nonblocking"]
    with output.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
