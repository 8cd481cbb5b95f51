"""The download cache the local stack fetches its servers into (Kafka's jars, Azurite).

Two processes may start the stack at once (two test workers, two shells): each fetch holds a
lock on its folder, so one fetches and the other waits, then finds the fetch complete.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """Where downloaded artifacts live between runs (git-ignored ``.cache/`` by default)."""
    return Path(os.environ.get("CLAIMX_CACHE_DIR", ".cache")).resolve()


@contextmanager
def fetching(folder: Path) -> Iterator[None]:
    """Held while ``folder`` is fetched into; other processes wait for it.

    A ``flock``: released by the kernel when its holder dies, so a killed fetch never leaves
    a lock behind (its completion marker is missing, and the next holder fetches again).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".fetch.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
