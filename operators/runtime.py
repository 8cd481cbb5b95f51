"""Process-level behaviour every dataflow shares."""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

from claimx_flow import metrics
from claimx_flow.config import Settings
from claimx_flow.health import serve


def setup_process(stage: str, settings: Settings, level: int = logging.INFO) -> None:
    """What every stage process does first: log to stderr, stop gracefully on SIGTERM, name
    its stage on every metric, and serve health probes and metrics on the stage's port."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    graceful_sigterm()
    metrics.set_stage(stage)
    serve(stage, settings)


def graceful_sigterm() -> None:
    """Make SIGTERM take Bytewax's SIGINT path: finish the epoch, close sinks, exit 0.

    Bytewax only listens for SIGINT; Kubernetes stops pods with SIGTERM, which would otherwise
    kill the process mid-batch (recovery would cover it, but a clean stop is cheaper).
    """

    def forward(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("SIGTERM: stopping gracefully")
        os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
