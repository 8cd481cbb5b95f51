"""Rows into their Delta table, one committer per table; a row the table refuses dead-letters
the message it came from, and the rest of the batch commits.

A row that cannot be converted to the table's schema (a text Arrow cannot encode, a value out
of range, an empty key) would fail the whole batch's write, and the replay would fail it again:
one poisoned message would stop the stage for good. So conversion is checked first and a batch
that does not convert is split until the rows that do not fit are found. A MERGE that still
fails is split the same way, but only while the table's storage answers: when it does not, the
failure is the stage's own infrastructure and the step fails (recovery replays the epoch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from claimx_flow.delta.tables import RowSchemaError
from claimx_flow.delta.writer import DeltaWriter, WriteOutcome
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import MessageIds
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.stages.outputs import RecordSender, SourcedRow

log = logging.getLogger(__name__)

Refusal = tuple[SourcedRow, Exception]


@dataclass
class TableCommitter:
    """Commits one table's rows; refused rows go to the stage's DLQ through ``router``."""

    writer: DeltaWriter
    router: FailureRouter
    sender: Callable[[], RecordSender]
    """Made on the first refusal: most committers never need one."""
    on_write: Callable[[WriteOutcome], None] = lambda outcome: None
    _sending: RecordSender | None = field(default=None, init=False)

    def commit(self, items: list[SourcedRow]) -> None:
        refused: list[Refusal] = []
        fitting = self._fitting(items, refused)
        if fitting:
            self._merge(fitting, refused)
        if refused:
            self._dead_letter(refused)

    def close(self) -> None:
        if self._sending is not None:
            self._sending.close()

    def _fitting(self, items: list[SourcedRow], refused: list[Refusal]) -> list[SourcedRow]:
        """The items whose rows convert to the table's schema (pure: no I/O)."""
        try:
            self.writer.prepare([row for row, _ in items])
        except RowSchemaError as error:
            if len(items) == 1:
                refused.append((items[0], error))
                return []
            middle = len(items) // 2
            return self._fitting(items[:middle], refused) + self._fitting(items[middle:], refused)
        return items

    def _merge(self, items: list[SourcedRow], refused: list[Refusal]) -> None:
        try:
            self.on_write(self.writer.write([row for row, _ in items]))
        except Exception as error:
            if not self.writer.answers():
                raise  # the storage is down, not the rows: fail the step, replay the epoch
            if len(items) == 1:
                refused.append((items[0], error))
                return
            log.warning(
                "%s: MERGE of %d rows failed (%s); splitting", self._table, len(items), error
            )
            middle = len(items) // 2
            self._merge(items[:middle], refused)
            self._merge(items[middle:], refused)

    def _dead_letter(self, refused: Sequence[Refusal]) -> None:
        """One DLQ record per refused message, however many of its rows were refused."""
        letters: dict[tuple[str, int, int], OutboundRecord] = {}
        for (row, source), error in refused:
            where = (source.topic, source.partition, source.offset)
            if where not in letters:
                letters[where] = self._letter(row, source, error)
        log.error(
            "%s: %d row(s) refused, %d message(s) dead-lettered; first: %s",
            self._table,
            len(refused),
            len(letters),
            refused[0][1],
        )
        if self._sending is None:
            self._sending = self.sender()
        self._sending.write_batch(list(letters.values()))

    def _letter(
        self, row: dict[str, object], source: KafkaRecord, error: Exception
    ) -> OutboundRecord:
        return self.router.route(
            source,
            reason=str(error) if isinstance(error, RowSchemaError) else f"{self._table}: {error}",
            error_class=type(error).__name__,
            category=ErrorCategory.PERMANENT,
            ids=MessageIds(
                _text(row, "project_id"), _text(row, "event_id"), _text(row, "media_id")
            ),
        )

    @property
    def _table(self) -> str:
        return self.writer.spec.name


def _text(row: dict[str, object], column: str) -> str | None:
    value = row.get(column)
    return value if isinstance(value, str) and value else None
