"""A replay process that dies (``os._exit``) right after Kafka confirmed its first chunk and
before the chunk's offsets are committed: the crash window a transactional replay must cover.

Run as ``python -m tests.dlq.crash_replay`` with the pipeline's environment.
"""

from __future__ import annotations

import os

from claimx_flow.config import load_settings
from claimx_flow.dlq.queues import DlqName
from claimx_flow.dlq.replay import ReplayOptions, ReplayRun

CRASH_EXIT_CODE = 77


class CrashBeforeCommit(ReplayRun):
    def _commit_progress(self, *args: object, **kwargs: object) -> None:
        os._exit(CRASH_EXIT_CODE)  # no cleanup of any kind, as with SIGKILL


if __name__ == "__main__":
    CrashBeforeCommit(load_settings(), DlqName.ENRICHMENT, ReplayOptions(chunk_size=5), 10.0).run()
