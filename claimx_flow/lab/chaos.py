"""Chaos: the whole pipeline under repeated SIGKILLs, broker restarts and API faults, then an
exact reconciliation.

The workload is fed in waves while a random stage is killed with SIGKILL at random moments and
started again (as Kubernetes would), the Kafka broker is killed and restarted, and the API
simulator fails a share of calls (and knows no project of a stable share, whose events end in
the enrichment DLQ). Then the faults stop, the pipeline is given time to settle,
and the conservation law is checked: every event and media file where it belongs, once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client, ensure_topics, pipeline_topics
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.reconcile import Reconciliation, reconcile
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.event_output import produce_lines
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.lab.stack.kafka import KafkaService
from claimx_flow.lab.stack.services import RunningService
from claimx_flow.models import RawEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChaosPlan:
    seconds: float = 60.0
    events: int = 400
    projects: int = 20
    waves: int = 4
    kills: bool = True
    """SIGKILL a random stage every ``kill_every_s``; off to watch a broker outage alone."""
    kill_every_s: tuple[float, float] = (4.0, 9.0)
    broker_restarts: int = 1
    broker_down_s: float = 1.0
    """How long the broker stays down at each restart: an outage, while the stages run on."""
    api_error_rate: float = 0.05
    unknown_project_rate: float = 0.05
    """Share of projects the API does not know (404): their events end in the enrichment DLQ,
    so failures are routed while stages are killed."""
    settle_timeout_s: float = 240.0
    seed: int = 0
    media_bytes: int = 64 * 1024
    processes: int = 1


@dataclass(frozen=True)
class SelfStop:
    """A stage that stopped without being killed: how it ended and the last line it logged.

    Kept in the report because the run's logs are deleted with its folder (unless ``--keep``),
    and a stop nobody can explain afterwards is a stop nobody can fix.
    """

    stage: str
    exit_codes: tuple[int | None, ...]
    last_line: str

    def described(self) -> str:
        codes = ", ".join("running" if c is None else str(c) for c in self.exit_codes)
        return (
            f"{self.stage} stopped by itself (exit {codes}): {self.last_line or 'nothing logged'}"
        )


@dataclass
class ChaosReport:
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0
    self_stops: list[SelfStop] = field(default_factory=list)
    settle_seconds: float = 0.0
    reconciliation: Reconciliation = field(default_factory=Reconciliation)

    @property
    def restarts_after_crash(self) -> int:
        return len(self.self_stops)

    @property
    def ok(self) -> bool:
        return self.reconciliation.ok


@dataclass
class BrokerControl:
    """A local broker chaos may kill and start again on the same port and data."""

    running: RunningService

    def kill(self) -> None:
        os.killpg(self.running.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        stop_process_group(self.running.pid, grace_s=10)

    def start_again(self) -> None:
        self.running = KafkaService().restart(self.running)


class SimulatorFaults:
    """Sets the simulator's fault knobs over its admin endpoint (in-thread or subprocess)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def set(self, **knobs: object) -> None:
        request = urllib.request.Request(
            f"{self.origin}/_admin/faults",
            data=json.dumps(knobs).encode(),
            method="PATCH",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


def run_chaos(
    settings: Settings,
    plan: ChaosPlan,
    log_dir: Path,
    simulator: SimulatorFaults,
    broker: BrokerControl | None = None,
    progress: Callable[[str], None] = log.info,
) -> ChaosReport:
    rng = random.Random(plan.seed)
    ensure_topics(admin_client(settings), pipeline_topics(settings))
    lines = list(event_lines(EventPlan(plan.events, plan.projects, "mixed", seed=plan.seed)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    pipeline = Pipeline(settings, settings_env(settings), log_dir)
    report = ChaosReport()
    simulator.set(
        error_rates={"503": plan.api_error_rate},
        apply_to=["api", "media"],
        not_found_rate=plan.unknown_project_rate,
    )
    pipeline.start(processes=plan.processes)
    try:
        _storm(settings, plan, rng, lines, pipeline, broker, report, progress)
        simulator.set(error_rates={})
        progress("faults off; waiting for the pipeline to settle")
        started = time.monotonic()
        report.reconciliation = _settle(settings, plan, events, pipeline, report, progress)
        report.settle_seconds = time.monotonic() - started
    finally:
        pipeline.stop()
    return report


def _storm(
    settings: Settings,
    plan: ChaosPlan,
    rng: random.Random,
    lines: list[tuple[str, str]],
    pipeline: Pipeline,
    broker: BrokerControl | None,
    report: ChaosReport,
    progress: Callable[[str], None],
) -> None:
    """Feed the waves and kill stages until the chaos window closes."""
    deadline = time.monotonic() + plan.seconds
    wave_size = -(-len(lines) // plan.waves)
    waves = [lines[i : i + wave_size] for i in range(0, len(lines), wave_size)]
    wave_every = plan.seconds / max(len(waves), 1)
    restarts = plan.broker_restarts if broker is not None else 0
    broker_at = sorted(rng.uniform(0.3, 0.7) * plan.seconds for _ in range(restarts))
    started = time.monotonic()
    next_wave = started
    next_kill = started + rng.uniform(*plan.kill_every_s)
    victims: list[str] = []
    broker_back_at: float | None = None  # the broker is down until then
    while time.monotonic() < deadline or waves or broker_back_at is not None or broker_at:
        now = time.monotonic()
        if waves and now >= next_wave and broker_back_at is None:
            produce_lines(waves.pop(0), settings.claimx_events_topic, settings)
            next_wave = now + wave_every
        if plan.kills and now < deadline and now >= next_kill:
            if not victims:  # every stage once, in a random order, before any twice
                victims = rng.sample(STAGE_NAMES, len(STAGE_NAMES))
            stage = victims.pop()
            _kill(pipeline, stage, rng)
            report.kills[stage] += 1
            progress(f"killed {stage} (SIGKILL), kill #{sum(report.kills.values())}")
            time.sleep(rng.uniform(0.2, 2.0))
            next_kill = time.monotonic() + rng.uniform(*plan.kill_every_s)
        if (
            broker is not None
            and broker_at
            and broker_back_at is None
            and now - started >= broker_at[0]
        ):
            broker_at.pop(0)
            progress(f"killing the Kafka broker (SIGKILL) for {plan.broker_down_s:g}s")
            broker.kill()
            broker_back_at = time.monotonic() + plan.broker_down_s
        if broker is not None and broker_back_at is not None and now >= broker_back_at:
            broker.start_again()
            broker_back_at = None
            report.broker_restarts += 1
            progress("the Kafka broker is back")
        _revive(pipeline, report, progress)
        time.sleep(0.2)


def _kill(pipeline: Pipeline, stage: str, rng: random.Random) -> None:
    """SIGKILL one process of the stage, then start its cluster again."""
    _, processes = pipeline.shapes.get(stage, (1, 1))
    pipeline.kill(stage, rng.randrange(processes))
    pipeline.restart(stage)


def _revive(
    pipeline: Pipeline, report: ChaosReport, progress: Callable[[str], None] = log.warning
) -> None:
    """Start again any stage that stopped on its own (as a pod restart would), noting why."""
    for stage in pipeline.dead():
        codes = pipeline.exit_codes(stage)  # before ended_logs: the same processes ended
        stop = SelfStop(stage, codes, last_log_line(pipeline.ended_logs(stage)))
        report.self_stops.append(stop)
        progress(f"{stop.described()}; starting it again")
        pipeline.restart(stage)


MAX_LINE_CHARS = 300


def last_log_line(paths: list[Path], tail_bytes: int = 8192) -> str:
    """The last non-blank line the most recently written of ``paths`` ends with (a traceback's
    last line names the exception), read from each file's tail only, cut to a report's width."""
    last: tuple[float, str] | None = None
    for path in paths:
        try:
            with path.open("rb") as f:
                stat = os.fstat(f.fileno())
                f.seek(max(stat.st_size - tail_bytes, 0))
                lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
            mtime = stat.st_mtime
        except OSError:
            continue
        if lines and (last is None or mtime >= last[0]):
            last = (mtime, lines[-1].strip())
    if last is None:
        return ""
    line = last[1]
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


def _settle(
    settings: Settings,
    plan: ChaosPlan,
    events: list[RawEvent],
    pipeline: Pipeline,
    report: ChaosReport,
    progress: Callable[[str], None] = log.warning,
) -> Reconciliation:
    """Reconcile until the law holds or the settle timeout passes; return the last result."""
    expected = {
        e.media_id: sim_data.media_content(plan.seed, int(e.media_id), plan.media_bytes)
        for e in events
        if e.event_type == "PROJECT_FILE_ADDED" and e.media_id
    }
    deadline = time.monotonic() + plan.settle_timeout_s
    while True:
        _revive(pipeline, report, progress)
        result = reconcile(
            settings,
            events,
            results_logs=pipeline.logs("results"),
            expected_content=expected,
        )
        if result.ok or time.monotonic() > deadline:
            return result
        time.sleep(2.0)
