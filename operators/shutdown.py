"""A graceful stop: on SIGTERM every input ends, so the dataflow drains and exits 0.

Bytewax turns SIGINT into an error exit at once. Ending the inputs instead lets every step see
end-of-stream: batches in flight are emitted, sinks write and close, the final snapshot is
taken, and ``python -m bytewax.run`` returns normally. A second SIGTERM falls back to SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

_requested = threading.Event()
_requested_at: float | None = None


def requested() -> bool:
    """True once a stop was asked for: inputs end their partitions."""
    return _requested.is_set()


def requested_at() -> float | None:
    """When the stop was asked for (``time.monotonic()``), for a step that bounds its drain
    from that moment; None before."""
    return _requested_at


def install() -> None:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        global _requested_at
        if _requested.is_set():
            log.warning("second SIGTERM: stopping now")
            os.kill(os.getpid(), signal.SIGINT)
            return
        log.info("SIGTERM: stopping gracefully (inputs end, batches drain, sinks close)")
        _requested_at = time.monotonic()
        _requested.set()

    signal.signal(signal.SIGTERM, on_sigterm)
