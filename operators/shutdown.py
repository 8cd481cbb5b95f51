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
from types import FrameType

log = logging.getLogger(__name__)

_requested = threading.Event()


def requested() -> bool:
    """True once a stop was asked for: inputs end their partitions."""
    return _requested.is_set()


def install() -> None:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if _requested.is_set():
            log.warning("second SIGTERM: stopping now")
            os.kill(os.getpid(), signal.SIGINT)
            return
        log.info("SIGTERM: stopping gracefully (inputs end, batches drain, sinks close)")
        _requested.set()

    signal.signal(signal.SIGTERM, on_sigterm)
