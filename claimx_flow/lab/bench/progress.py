"""Progress while a bench runs: one Rich bar per phase, on stderr so ``--json`` stays clean."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

Update = Callable[[int], None]


class Phases:
    """``update = phases.start("preload", total)``; ``update(n)`` moves its bar to ``n``."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<46}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self._current: TaskID | None = None

    def __enter__(self) -> Phases:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish()
        self._progress.stop()

    def start(self, description: str, total: int | None = None) -> Update:
        self._finish()
        task = self._progress.add_task(description, total=total)
        self._current = task

        def update(completed: int) -> None:
            self._progress.update(task, completed=completed)

        return update

    def note(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)

    def _finish(self) -> None:
        if self._current is not None:
            task = self._progress.tasks[self._current]
            if task.total is None:
                self._progress.update(self._current, total=task.completed or 1)
            self._progress.update(self._current, completed=task.total)
            self._current = None
