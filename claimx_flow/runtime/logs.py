"""How stage processes and the ``claimx`` command write their logs: text lines for people, JSON
lines (``LOG_FORMAT=json``) for a log collector.

A JSON line is one object: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, and where
known ``stage``, ``worker``, ``topic``, ``partition``, ``offset`` and ``exception``. The stage
and (with one worker per process) the worker hold for the whole process (:func:`configure`'s
``context``); a line about one Kafka record names it through ``extra=``:
``log.warning("…", record.position, extra=at(record))``, or, where this module cannot be
imported (operators), ``extra={"topic": t, "partition": p, "offset": o}`` and
``extra={"worker": worker_index}``: the formatter reads those attribute names.

Secrets never reach a line: each message and traceback is redacted with the configured secrets
and every credential-shaped text (``claimx_flow.models.redaction``), in both formats.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, TextIO

from claimx_flow.models.redaction import redact

LogFormat = Literal["text", "json"]
STAGE_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""A stage process's text line."""
CONTEXT_FIELDS = ("stage", "worker", "topic", "partition", "offset")
"""Record attributes a JSON line carries when a record has them (set or passed as ``extra=``)."""
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Positioned(Protocol):
    """Anything that names one Kafka record: a consumed record, a DLQ record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def at(record: Positioned) -> dict[str, object]:
    """``extra=`` for a log line about ``record``: its topic, partition and offset."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def parse_format(text: str | None, default: LogFormat = "text") -> LogFormat:
    """``LOG_FORMAT`` as given, read leniently (before the settings are validated)."""
    value = (text or "").strip().lower()
    return "json" if value == "json" else "text" if value == "text" else default


def parse_level(text: str | None, default: int = logging.INFO) -> int:
    """``LOG_LEVEL`` as given (a name, any case), read leniently."""
    value = (text or "").strip().upper()
    return logging.getLevelName(value) if value in LEVELS else default


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a line is written (as ``logging.lastResort``
    does), so a caller that swaps ``sys.stderr`` (a test runner) never gets a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class ContextFilter(logging.Filter):
    """Gives every record the process's context (stage, worker) unless it has its own."""

    def __init__(self, context: Mapping[str, object]) -> None:
        super().__init__()
        self.context = {k: v for k, v in context.items() if v is not None}

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """A text line, redacted (message and traceback alike)."""

    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self.secrets),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value if isinstance(value, int | float) else str(value)
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info), self.secrets)
        elif record.stack_info:
            document["stack"] = redact(self.formatStack(record.stack_info), self.secrets)
        return json.dumps(document, ensure_ascii=False, default=str)


def configure(
    log_format: LogFormat = "text",
    level: int = logging.INFO,
    *,
    secrets: Iterable[str] = (),
    context: Mapping[str, object] | None = None,
    text_format: str = STAGE_TEXT,
    replace: bool = True,
) -> None:
    """Send every log record to stderr in ``log_format`` at ``level`` and above.

    ``replace`` drops the root logger's handlers first (a stage process); without it a root
    logger that already has handlers (a test runner's) is left alone, as ``basicConfig`` does.
    Uncaught exceptions are logged through the same handler in either format, so their text
    is masked as every line's is. With ``json``, Python warnings become JSON lines too, so
    stderr holds nothing else.
    """
    root = logging.getLogger()
    if root.handlers and not replace:
        return
    handler = StderrHandler()
    secret_values = tuple(secrets)
    formatter: logging.Formatter = (
        JsonFormatter(secret_values)
        if log_format == "json"
        else TextFormatter(text_format, secret_values)
    )
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter(context or {}))
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    if log_format == "json":
        logging.captureWarnings(True)


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)
        return
    logging.getLogger("claimx_flow").critical("uncaught %s", kind.__name__, exc_info=error)


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("claimx_flow").critical(
        "uncaught %s in thread %s", args.exc_type.__name__, name, exc_info=args.exc_value
    )
