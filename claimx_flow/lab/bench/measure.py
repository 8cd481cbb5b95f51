"""Small measuring tools: percentiles, resident memory from /proc, machine facts, windows."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def percentiles(
    values: Sequence[float], points: Sequence[float] = (50, 95, 99)
) -> dict[str, float]:
    """Nearest-rank percentiles plus the maximum; empty input gives an empty dict."""
    if not values:
        return {}
    ordered = sorted(values)
    result = {}
    for point in points:
        rank = max(1, -(-len(ordered) * point // 100))  # ceil, at least the first
        result[f"p{point:g}"] = ordered[int(rank) - 1]
    result["max"] = ordered[-1]
    return result


def memory_bytes(pid: int) -> tuple[int, int] | None:
    """The process's resident set now and its high-water mark so far (``VmRSS``, ``VmHWM``), or
    None once it is gone.

    The peak is not ``ru_maxrss``: Linux carries the spawning process's high-water mark into the
    child across ``exec``, so a stage started by a harness holding 300 MiB reported at least 300
    MiB (``python -c pass`` did). ``VmHWM`` belongs to the address space ``exec`` made.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found: dict[str, int] = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line[:6]] = int(line.split()[1]) * 1024
    if len(found) < 2:
        return None  # exiting: its address space is gone
    return found["VmRSS:"], found["VmHWM:"]


def settle_disk() -> None:
    """Write back what earlier phases left dirty (preloaded files, the bare loop's copies), so a
    measured run pays for its own disk writes and not for the harness's."""
    os.sync()


def cpu_seconds() -> float:
    """CPU this process has used so far, user and system, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, memory, load, versions."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_mem_total_kib() / MIB, 1),
        "load_average": [round(x, 2) for x in load_average()],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Window:
    """The processing window of a run, in epoch seconds, and how its ends were found."""

    start: float
    end: float
    method: str

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-3)

    def rate(self, items: float) -> float:
        return items / self.seconds


class Stopwatch:
    """Wall-clock seconds since it was made (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
