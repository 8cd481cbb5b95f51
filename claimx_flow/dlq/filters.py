"""Which DLQ records a replay takes: ids, project, category, error text, event type, time range.

Filters are read from the failure headers first (the stage wrote the ids it knew there) and
from the message body only where the headers say nothing, so a record whose ids came later
still matches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime

from claimx_flow.dlq.reader import DeadLetter
from claimx_flow.errors import ErrorCategory
from claimx_flow.models.types import as_utc


@dataclass(frozen=True)
class ReplayFilter:
    """Every condition given must hold; an empty filter takes everything."""

    event_ids: frozenset[str] = frozenset()
    media_ids: frozenset[str] = frozenset()
    project_ids: frozenset[str] = frozenset()
    categories: frozenset[ErrorCategory] = frozenset()
    event_types: frozenset[str] = frozenset()
    error_contains: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        ids = letter.ids
        failure = letter.failure
        checks = (
            not self.event_ids or ids.event_id in self.event_ids,
            not self.media_ids or ids.media_id in self.media_ids,
            not self.project_ids or ids.project_id in self.project_ids,
            not self.categories
            or (failure is not None and failure.error_category in self.categories),
            not self.event_types or letter.event_type in self.event_types,
            self.error_contains is None or self._error_matches(letter),
            self.since is None or (letter.timestamp is not None and letter.timestamp >= self.since),
            self.until is None or (letter.timestamp is not None and letter.timestamp < self.until),
        )
        return all(checks)

    def _error_matches(self, letter: DeadLetter) -> bool:
        if letter.failure is None or self.error_contains is None:
            return False
        text = f"{letter.failure.error_class}: {letter.failure.error_message}"
        return self.error_contains.casefold() in text.casefold()

    @property
    def is_empty(self) -> bool:
        return self == ReplayFilter()

    def fingerprint(self) -> str:
        """A short stable name for this set of conditions, to key a replay session on."""
        parts = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, frozenset):
                value = ",".join(sorted(str(v) for v in value))
            elif isinstance(value, datetime):
                value = value.isoformat()
            parts.append(f"{spec.name}={value}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


def split_list(text: str | None) -> frozenset[str]:
    """``"a, b,,c"`` → ``{"a", "b", "c"}``: the CLI's comma-separated id lists."""
    if not text:
        return frozenset()
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def parse_categories(text: str | None) -> frozenset[ErrorCategory]:
    names = split_list(text)
    known = {c.value for c in ErrorCategory}
    unknown = sorted(n for n in names if n.lower() not in known)
    if unknown:
        raise ValueError(
            f"unknown category {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return frozenset(ErrorCategory(n.lower()) for n in names)


def parse_instant(text: str | None) -> datetime | None:
    """An ISO 8601 date or datetime; without an offset it is taken as UTC, as ClaimX writes."""
    if text is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(f"not an ISO date or datetime: {text!r}") from None
