"""Process-level behaviour every dataflow shares."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType


def graceful_sigterm() -> None:
    """Make SIGTERM take Bytewax's SIGINT path: finish the epoch, close sinks, exit 0.

    Bytewax only listens for SIGINT; Kubernetes stops pods with SIGTERM, which would otherwise
    kill the process mid-batch (recovery would cover it, but a clean stop is cheaper).
    """

    def forward(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("SIGTERM: stopping gracefully")
        os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
