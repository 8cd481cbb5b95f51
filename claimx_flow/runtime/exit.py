"""HTTP sessions a stage opened on its event loop, closed when the process exits normally.

A stage process ends when its dataflow does (a graceful stop, or the input's end). Sessions still
open then make asyncio log "Unclosed client session" at ERROR as the interpreter tears them down:
error lines on every rolling restart, for nothing wrong. Closing them at exit, on the loop that
opened them, ends quietly. The loop runs on a daemon thread (``operators.async_step``), which
still runs while ``atexit`` hooks do.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

EXIT_CLOSE_S = 5.0
"""How long the exit waits for a close."""


def close_at_exit(close: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run ``close()`` on the running loop when the process exits, if that loop still runs then.
    Returns the hook; ``atexit.unregister`` it once closed otherwise."""
    loop = asyncio.get_running_loop()

    def hook() -> None:
        if loop.is_closed() or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(EXIT_CLOSE_S)
        except Exception as exc:  # the process is ending: say it, stop nothing
            log.debug("closing at exit failed: %s", exc)

    atexit.register(hook)
    return hook
