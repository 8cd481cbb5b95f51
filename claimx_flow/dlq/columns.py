"""The columns an operator sorts a DLQ by, per record and counted over many."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from claimx_flow.dlq.masking import masked_text
from claimx_flow.dlq.reader import DeadLetter


def masked(text: str | None) -> str | None:
    return masked_text(text) if text else text


@dataclass(frozen=True)
class LetterColumns:
    """A DLQ record's columns in ``inspect`` (table and JSON) and their tallies in ``list``:
    ids, attempt and category from the ``claimx.*`` headers (ids completed from the body where
    the headers lack them); the event type from the body, which an enrichment task and a raw
    event carry (``event_type``, or ``eventType`` in ClaimX's own spelling: ``value_fields``)."""

    event_type: str | None
    project_id: str | None
    media_id: str | None
    attempt: int | None
    error_category: str | None


def letter_columns(letter: DeadLetter) -> LetterColumns:
    ids = letter.ids
    failure = letter.failure
    return LetterColumns(
        event_type=masked(letter.event_type),
        project_id=masked(ids.project_id),
        media_id=masked(ids.media_id),
        attempt=failure.attempt if failure else None,
        error_category=failure.error_category.value if failure else None,
    )


@dataclass
class ColumnTally:
    """The columns counted over the records a ``list`` scanned (``-`` where a record has none)."""

    event_types: Counter[str] = field(default_factory=Counter)
    projects: Counter[str] = field(default_factory=Counter)
    media: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)

    def count(self, letter: DeadLetter) -> None:
        columns = letter_columns(letter)
        self.event_types[columns.event_type or "-"] += 1
        self.projects[columns.project_id or "-"] += 1
        self.media[columns.media_id or "-"] += 1
        self.attempts["-" if columns.attempt is None else str(columns.attempt)] += 1
