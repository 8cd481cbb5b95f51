"""Which DLQ records a replay takes: ids, project, category, error text, event type, time
range, and (for the command that forces parked records) positions and replay count.

Filters are read from the failure headers first (the stage wrote the ids it knew there) and
from the message body only where the headers say nothing, so a record whose ids came later
still matches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime
from typing import NamedTuple

from claimx_flow.dlq.reader import DeadLetter
from claimx_flow.errors import ErrorCategory
from claimx_flow.models.types import as_utc


class OffsetSpan(NamedTuple):
    """Offsets ``first`` to ``last`` (both included) of one partition."""

    partition: int
    first: int
    last: int

    def __str__(self) -> str:
        end = "" if self.last == self.first else f"-{self.last}"
        return f"{self.partition}:{self.first}{end}"


# Conditions added after sessions were first named: left out of a fingerprint while unset, so
# a session named before keeps its name (and its progress).
_LATER = frozenset({"positions", "min_replays"})


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
    positions: frozenset[OffsetSpan] = frozenset()
    min_replays: int | None = None

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
            not self.positions or self._at_position(letter),
            self.min_replays is None or letter.replay_count >= self.min_replays,
        )
        return all(checks)

    def _at_position(self, letter: DeadLetter) -> bool:
        return any(
            s.partition == letter.partition and s.first <= letter.offset <= s.last
            for s in self.positions
        )

    def narrowed(
        self, starts: dict[int, int], ends: dict[int, int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """The offsets to read, narrowed to ``positions`` when given: forcing a few parked
        records through does not read the whole DLQ."""
        if not self.positions:
            return starts, ends
        narrow_starts, narrow_ends = {}, {}
        for p, start in starts.items():
            spans = [s for s in self.positions if s.partition == p]
            first = min((s.first for s in spans), default=start)
            last = max((s.last + 1 for s in spans), default=start)
            narrow_starts[p] = min(max(start, first), ends[p])
            narrow_ends[p] = max(min(ends[p], last), narrow_starts[p])
        return narrow_starts, narrow_ends

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
            if spec.name in _LATER and value == spec.default:
                continue
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


def parse_positions(text: str | None) -> frozenset[OffsetSpan]:
    """``"0:17,1:3-9"`` → partition 0 offset 17, partition 1 offsets 3 to 9."""
    spans = []
    for part in split_list(text):
        partition, _, offsets = part.partition(":")
        first, dash, last = offsets.partition("-")
        try:
            if dash and not last:  # "0:17-" is no span: an offset cut short, not offset 17
                raise ValueError
            span = OffsetSpan(int(partition), int(first), int(last or first))
        except ValueError:
            raise ValueError(
                f"not a position: {part!r} (PARTITION:OFFSET or PARTITION:FIRST-LAST)"
            ) from None
        if min(span) < 0 or span.last < span.first:
            raise ValueError(f"not a position: {part!r} (offsets from 0, first to last)")
        spans.append(span)
    return frozenset(spans)
