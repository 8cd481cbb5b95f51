"""Partial downloads in the shared cache, and who owns them.

A download streams into a ``.part`` file and renames it when complete. A process killed
mid-download leaves its ``.part`` behind; nobody else may delete a ``.part`` that a live process
is still writing, even on another pod sharing the volume. So each downloader process holds an
exclusive lock on a file of its own for as long as it lives, and names its partial files after
it: a lock that can be taken belongs to a dead process, whose partial files are orphans.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import time
import uuid
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

RUNS_DIR = ".runs"

CLAIM_GRACE_S = 60.0
"""How old an unlocked ``.claiming`` file must be before a sweep takes it for a process that
died between creating and locking it, rather than one about to lock it."""


class CacheRun:
    """This process's claim on the partial files it writes into ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.run_id = uuid.uuid4().hex
        self._attempts = itertools.count()
        runs = cache_dir / RUNS_DIR
        runs.mkdir(parents=True, exist_ok=True)
        # Locked under a name no sweep reads, then renamed (the lock stays with the file): a
        # sweep that met the file between its creation and its lock would take it for a dead
        # process's, delete it, and make this process's lock fail.
        claiming = runs / f"{self.run_id}.claiming"
        self._lock: IO[bytes] = claiming.open("wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock.write(f"{os.getpid()}\n".encode())
        self._lock.flush()
        claiming.rename(runs / f"{self.run_id}.lock")

    def partial(self, target: Path) -> Path:
        """A partial file of its own for every download, even two of the same media at once
        (a duplicate task in one batch): each renames only what it wrote itself."""
        return target.with_name(f"{target.name}.{next(self._attempts)}.{self.run_id}.part")


def sweep_orphans(cache_dir: Path) -> int:
    """Delete the partial files of every downloader process that no longer runs."""
    runs = cache_dir / RUNS_DIR
    if not runs.exists():
        return 0
    removed = 0
    for lock_path in runs.glob("*.lock"):
        try:
            with lock_path.open("rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                run_id = lock_path.stem
                for orphan in cache_dir.glob(f"*.{run_id}.part"):
                    orphan.unlink(missing_ok=True)
                    removed += 1
                lock_path.unlink(missing_ok=True)
        except BlockingIOError:
            continue  # a live process holds it
        except FileNotFoundError:
            continue  # another sweeper got there first
    if removed:
        log.info("removed %d partial downloads left by stopped processes", removed)
    _sweep_stale_claims(runs)
    return removed


def _sweep_stale_claims(runs: Path) -> None:
    """Delete the claim files of processes killed before they renamed them into place (they
    wrote no partial file yet): unlocked, and older than any claim still being taken. Age is
    the file's time against this host's clock, so pods sharing the cache are assumed to agree
    on the time to well within ``CLAIM_GRACE_S`` (NTP keeps nodes within a second)."""
    now = time.time()
    for claim in runs.glob("*.claiming"):
        try:
            if now - claim.stat().st_mtime < CLAIM_GRACE_S:
                continue
            with claim.open("rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                claim.unlink(missing_ok=True)
                log.info("removed the run claim %s of a process that stopped", claim.name)
        except (BlockingIOError, FileNotFoundError):
            continue  # a live process holds it, or it has been renamed or swept meanwhile


def cached_files(cache_dir: Path) -> list[Path]:
    """Every downloaded or partial file in the cache (not the process locks)."""
    if not cache_dir.exists():
        return []
    return [p for p in cache_dir.iterdir() if p.is_file()]
