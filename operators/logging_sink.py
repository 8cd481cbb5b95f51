"""A sink that writes each item as a log line (reports, summaries)."""

from __future__ import annotations

import logging

from bytewax.outputs import DynamicSink, StatelessSinkPartition


class _LogPartition(StatelessSinkPartition[str]):
    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def write_batch(self, items: list[str]) -> None:
        for item in items:
            self._logger.info("%s", item)


class LogSink(DynamicSink[str]):
    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LogPartition:
        return _LogPartition(self._logger)
