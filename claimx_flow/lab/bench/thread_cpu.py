"""Each thread's CPU in a stage process: ``python -m claimx_flow.lab.bench.thread_cpu STAGE``.

Waits for the first ``python -m bytewax.run dataflows.STAGE`` process to start (run a bench in
another shell), reads every thread's user and system time from ``/proc/<pid>/task`` every
0.1 s until the process exits, and prints the last reading per thread: the event-loop thread
against the Bytewax worker (the main thread) says whether a stage is bound by one thread or by
the GIL the two share, which a whole-process figure cannot. Python threads all carry the
process's name, so they are told apart by thread id; librdkafka's are summed by name.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ThreadCpu:
    name: str
    user_s: float
    system_s: float


def runs_stage(argv: list[str], stage: str) -> bool:
    """A Python process started as ``python … bytewax.run dataflows.<stage>[:flow] …`` (not a
    wrapper such as ``timeout`` around one, nor another stage whose name starts the same)."""
    if not argv or not Path(argv[0]).name.startswith("python"):
        return False
    return any(
        first == "bytewax.run" and second.split(":", 1)[0] == f"dataflows.{stage}"
        for first, second in itertools.pairwise(argv)
    )


def find_stage(stage: str, timeout_s: float = 600.0) -> int:
    """The pid of the first process running ``bytewax.run dataflows.<stage>``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if runs_stage(argv, stage):
                return int(entry.name)
        time.sleep(0.05)
    raise TimeoutError(f"no dataflows.{stage} process started within {timeout_s:.0f}s")


def stat_cpu_s(stat: Path) -> tuple[float, float]:
    """User and system seconds from a ``/proc`` ``stat`` file (a process's: all its threads)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def process_cpu_s(pid: int) -> float:
    """User plus system time of every thread of ``pid`` so far."""
    return sum(stat_cpu_s(Path(f"/proc/{pid}/stat")))


def read_threads(pid: int) -> dict[int, ThreadCpu]:
    """Each thread's CPU so far (threads gone between listing and reading are skipped)."""
    found: dict[int, ThreadCpu] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            user_s, system_s = stat_cpu_s(task / "stat")
        except OSError:
            continue
        found[int(task.name)] = ThreadCpu(name, user_s, system_s)
    return found


def follow(pid: int) -> dict[int, ThreadCpu]:
    """The last reading of every thread the process had, until it exits."""
    last: dict[int, ThreadCpu] = {}
    while True:
        try:
            last.update(read_threads(pid))
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # the process is gone
            return last
        if state in ("Z", "X"):  # exited, not yet reaped by its parent
            return last
        time.sleep(0.1)


def summary(pid: int, threads: dict[int, ThreadCpu]) -> list[str]:
    totals: dict[str, list[float]] = {}
    for tid, cpu in threads.items():
        if tid == pid:
            label = "main (Bytewax worker)"
        elif cpu.name.startswith("rdk:"):
            label = cpu.name
        else:
            label = f"{cpu.name} {tid}"
        total = totals.setdefault(label, [0.0, 0.0, 0])
        total[0] += cpu.user_s
        total[1] += cpu.system_s
        total[2] += 1
    rows = sorted(totals.items(), key=lambda item: -(item[1][0] + item[1][1]))
    return [
        f"{label:28} x{int(n):<3} {user + system:7.2f} s (user {user:.2f}, system {system:.2f})"
        for label, (user, system, n) in rows
        if user + system >= 0.05
    ]


def main(stage: str) -> None:
    pid = find_stage(stage)
    print(f"dataflows.{stage}: pid {pid}", flush=True)
    for line in summary(pid, follow(pid)):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "download")
