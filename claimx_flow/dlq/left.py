"""Records a replay left in the DLQ (parked or truncated copies), kept as the summary shows them.

After a large outage a replay may park millions of records. Keeping each one whole (its value
bytes too) grew without bound; a summary lists the first ``LEFT_SHOWN`` by position, ids and
replay count, and counts the rest. Where they lie (first and last offset per partition) and
their highest replay count are all the command that forces them through needs
(``force.force_command``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from claimx_flow.dlq.filters import OffsetSpan
from claimx_flow.dlq.reader import DeadLetter

LEFT_SHOWN = 50


@dataclass(frozen=True)
class LeftRecord:
    """One record left in the DLQ, by position and ids."""

    partition: int
    offset: int
    event_id: str | None
    media_id: str | None
    replay_count: int

    @classmethod
    def of(cls, letter: DeadLetter) -> LeftRecord:
        ids = letter.ids
        return cls(letter.partition, letter.offset, ids.event_id, ids.media_id, letter.replay_count)


@dataclass
class LeftRecords:
    """How many records were left, the first ``LEFT_SHOWN``, their spans and most replays."""

    total: int = 0
    shown: list[LeftRecord] = field(default_factory=list)
    spans: dict[int, OffsetSpan] = field(default_factory=dict)
    most_replays: int = 0

    def add(self, letter: DeadLetter) -> None:
        self.total += 1
        if len(self.shown) < LEFT_SHOWN:
            self.shown.append(LeftRecord.of(letter))
        self._cover(OffsetSpan(letter.partition, letter.offset, letter.offset))
        self.most_replays = max(self.most_replays, letter.replay_count)

    def merge(self, other: LeftRecords) -> None:
        self.total += other.total
        self.shown.extend(other.shown[: LEFT_SHOWN - len(self.shown)])
        for span in other.spans.values():
            self._cover(span)
        self.most_replays = max(self.most_replays, other.most_replays)

    def _cover(self, span: OffsetSpan) -> None:
        known = self.spans.get(span.partition)
        if known is not None:
            span = OffsetSpan(
                span.partition, min(known.first, span.first), max(known.last, span.last)
            )
        self.spans[span.partition] = span
