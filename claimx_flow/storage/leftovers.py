"""Staging files an upload left behind: the one piece of storage nothing else cleans up.

Both stores write a file under a hidden name of its own beside its target, then rename it onto
the target. A failed upload deletes its staging file; a process killed mid-upload (SIGKILL, a
lost node, an out-of-memory kill) cannot, and the half-written file stays, hidden and never
read, costing storage until an operator sweeps it (``claimx files sweep``).

A staging file is a leftover only once it is older than any upload could be: an upload past its
deadline (``UPLOAD_TIMEOUT_SECONDS``) is cancelled, and the cancel deletes its staging file.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from claimx_flow.storage.paths import MEDIA_ROOT

STAGING_SUFFIX = ".part"
_STAGING_NAME = re.compile(r"\.(?P<target>.+)\.[0-9a-f]{16,32}\.part")

SWEEP_MARGIN = timedelta(hours=1)
"""The least age a sweep accepts beyond the upload deadline: it never races a live upload."""


@dataclass(frozen=True)
class Leftover:
    """One staging file: its path in the store (as uploads name paths), size and last write."""

    path: str
    bytes: int
    modified: datetime

    @property
    def target(self) -> str:
        """The path the upload was writing."""
        folder, _, name = self.path.rpartition("/")
        match = _STAGING_NAME.fullmatch(name)
        target = match["target"] if match else name
        return f"{folder}/{target}" if folder else target


def staging_name(target_name: str) -> str:
    """A hidden name beside ``target_name``, its own for every upload attempt."""
    return f".{target_name}.{uuid.uuid4().hex}{STAGING_SUFFIX}"


def is_staging_name(name: str) -> bool:
    """Whether a file's own name (no folder) is one :func:`staging_name` makes."""
    return _STAGING_NAME.fullmatch(name) is not None


def checked(leftover: Leftover) -> Leftover:
    """``leftover`` if its path is a staging file under the media root; a store deletes
    nothing else."""
    folder, _, name = leftover.path.rpartition("/")
    if not is_staging_name(name) or not f"{folder}/".startswith(f"{MEDIA_ROOT}/"):
        raise ValueError(f"{leftover.path!r} is not a staging file under {MEDIA_ROOT}/")
    if any(part in {"", ".", ".."} for part in folder.split("/")):
        raise ValueError(f"{leftover.path!r} is not a staging file under {MEDIA_ROOT}/")
    return leftover


def least_age(upload_timeout_s: float) -> timedelta:
    """The youngest staging file a sweep may take for a leftover."""
    return timedelta(seconds=upload_timeout_s) + SWEEP_MARGIN
