"""The download cache the local stack fetches its servers into (Kafka's jars, Azurite).

Two processes may start the stack at once (two test workers, two shells): each fetch holds a
lock on its folder, so one fetches and the other waits, then finds the fetch complete.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """Where downloaded artifacts live between runs (git-ignored ``.cache/`` by default)."""
    return Path(os.environ.get("CLAIMX_CACHE_DIR", ".cache")).resolve()


def fetch_once(folder: Path, complete: Callable[[], bool], fetch: Callable[[], None]) -> None:
    """Run ``fetch`` into ``folder`` unless ``complete()`` says it is done, holding the folder's
    lock meanwhile: another process fetching the same waits, then finds it done.

    A ``flock``: released by the kernel when its holder dies, however it dies, so a killed
    fetch never leaves a lock behind (its completion marker is missing, and the next holder
    fetches again).
    """
    if complete():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".fetch.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not complete():  # done by another process while this one waited
                fetch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
