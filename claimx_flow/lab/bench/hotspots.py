"""Where a profiled stage spent its time: ``python -m claimx_flow.lab.bench.hotspots DIR``.

Reads the collapsed stacks py-spy wrote for each stage (``claimx bench … --profile DIR``) and
prints, per profile, the share of samples per thread, the functions with the most samples
inclusive (anywhere on the stack) and exclusive (on top), and the share per package.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_PACKAGES = (
    "bytewax",
    "confluent_kafka",
    "deltalake",
    "pyarrow",
    "pydantic",
    "pydantic_core",
    "aiohttp",
    "asyncio",
    "prometheus_client",
    "claimx_flow",
    "operators",
    "dataflows",
    "json",
    "hashlib",
    "concurrent",
    "threading",
)


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def package_of(frame: str) -> str:
    match = _FRAME.match(frame)
    file = match.group("file") if match else frame
    for package in _PACKAGES:
        if f"/{package}/" in file or file.startswith(f"{package}/"):
            return package
    return Path(file).stem if "/" in file else file


def summarise(path: Path, top: int = 15) -> str:
    stacks = parse(path)
    total = sum(count for _, count in stacks) or 1
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        thread, body = (frames[0], frames[1:]) if frames[0].startswith("thread") else ("", frames)
        threads[thread] += count
        for frame in set(body):
            inclusive[frame] += count
        if body:
            exclusive[body[-1]] += count
            packages[package_of(body[-1])] += count
    lines = [f"== {path.name}: {total:,} samples"]
    lines += [f"  thread {share(n, total)}  {name}" for name, n in threads.most_common(6)]
    lines.append("  inclusive:")
    lines += [f"    {share(n, total)}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("  exclusive (on top of the stack):")
    lines += [f"    {share(n, total)}  {name}" for name, n in exclusive.most_common(top)]
    lines.append("  by package (exclusive):")
    lines += [f"    {share(n, total)}  {name}" for name, n in packages.most_common(top)]
    return "\n".join(lines)


def share(part: int, total: int) -> str:
    return f"{part / total:6.1%}"


def main(argv: list[str]) -> None:
    directory = Path(argv[0]) if argv else Path("profiles")
    for path in sorted(directory.glob("*.txt")):
        print(summarise(path))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
