"""Repeats of a chatty library's log lines, dropped and counted."""

from __future__ import annotations

import logging
import re
import threading
import time

BEFORE_BAR = r" \| .*$"
"""``same`` for lines written as ``<kind> | <details>``: the kind is what comes before the bar."""


class RepeatFilter(logging.Filter):
    """Keeps the first line of each kind per ``window_s`` and drops its repeats, counting them
    on the next line of that kind kept.

    For a chatty library: with a broker down, librdkafka reports every reconnect of every
    client, over a hundred lines a second from one stage, which buries every other line and
    bills the log store by the line. ``same`` is a pattern of what does not tell two lines
    apart (a client's name, a duration)."""

    MAX_KINDS = 512

    def __init__(self, same: str, window_s: float = 60.0) -> None:
        super().__init__()
        self._same = re.compile(same, re.DOTALL)  # a message may span lines
        self._window_s = window_s
        self._lock = threading.Lock()
        self._kinds: dict[str, list[float | int]] = {}  # kind → [kept at, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        kind = self._same.sub("", message)
        now = time.monotonic()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self._window_s:
                seen[1] += 1
                return False
            dropped = int(seen[1]) if seen is not None else 0
            if len(self._kinds) >= self.MAX_KINDS:  # forget kinds past their window, or all
                kept = {k: v for k, v in self._kinds.items() if now - v[0] < self._window_s}
                self._kinds = kept if len(kept) < self.MAX_KINDS // 2 else {}
            self._kinds[kind] = [now, 0]
        if dropped:
            record.msg = f"{message} (and {dropped} more like it in {self._window_s:.0f}s)"
            record.args = ()
        return True
