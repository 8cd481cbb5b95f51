"""The JSON documents of ``--json``: one parseable document per command, for scripts.

Bytes are shown as UTF-8 text where they decode, else base64, with an ``*_encoding`` field
saying which; instants are ISO 8601 in UTC. Every URL's query string in a message's key, value,
headers and error messages (base64 ones too) is masked (``https://host/path?***``): presigned
URLs carry their signature and credential there; so is credential-shaped text (``masking``).
Only ``replay`` sends the raw bytes on.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from claimx_flow.dlq.browse import DlqSurvey
from claimx_flow.dlq.columns import ColumnTally, letter_columns, masked
from claimx_flow.dlq.masking import masked_header, masked_text
from claimx_flow.dlq.purge import PurgePlan
from claimx_flow.dlq.reader import DeadLetter
from claimx_flow.dlq.replay import ReplayOutcome

TOP = 5
TOP_COLUMN = 10


def as_text(data: bytes | None) -> tuple[str | None, str | None]:
    """``(text, encoding)``: ``("…", "utf-8")``, ``("…", "base64")`` or ``(None, None)``."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def shown(
    data: bytes | None, mask: Callable[[str], str] = masked_text
) -> tuple[str | None, str | None]:
    """:func:`as_text` for people and exports, with URL query strings and credentials masked
    (``masking``).

    Bytes that are not UTF-8 are masked too, then shown as base64: one stray byte in a file
    name must not put its presigned URL's signature on the screen in base64."""
    if data is None:
        return None, None
    text = data.decode("utf-8", "surrogateescape")  # every byte kept, and masking sees the text
    return as_text(mask(text).encode("utf-8", "surrogateescape"))


def shown_header(name: str, data: bytes | None) -> tuple[str | None, str | None]:
    """:func:`shown` for a header: all of its value masked when its name says it is a secret."""
    return shown(data, lambda text: masked_header(name, text))


def masked_counts(counts: Counter[str]) -> Counter[str]:
    """Counts keyed by text, masked (keys that become equal are added up)."""
    merged: Counter[str] = Counter()
    for name, count in counts.items():
        merged[masked_text(name)] += count
    return merged


def instant(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


# The columns: what an operator sorts a DLQ by ------------------------------------------------


def _tally_document(tally: ColumnTally) -> dict[str, Any]:
    def top(counts: Counter[str]) -> dict[str, Any]:
        known = [name for name in counts if name != "-"]
        return {
            "distinct": len(known),
            "without": counts.get("-", 0),
            "top": dict(Counter({n: counts[n] for n in known}).most_common(TOP_COLUMN)),
        }

    return {
        "event_types": top(tally.event_types),
        "projects": top(tally.projects),
        "media": top(tally.media),
        "attempts": dict(sorted(tally.attempts.items(), key=_attempt_order)),
    }


def _attempt_order(item: tuple[str, int]) -> tuple[int, int]:
    name = item[0]
    return (0, int(name)) if name.isdigit() else (1, 0)


def letter_document(letter: DeadLetter) -> dict[str, Any]:
    key, key_encoding = shown(letter.key)
    value, value_encoding = shown(letter.value)
    ids = letter.ids
    failure = letter.failure.model_dump(mode="json") if letter.failure else None
    if failure is not None:
        failure["error_message"] = masked(failure["error_message"])
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "timestamp": instant(letter.timestamp),
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        "ids": {"event_id": ids.event_id, "project_id": ids.project_id, "media_id": ids.media_id},
        **vars(letter_columns(letter)),
        "failure": failure,
        "failure_error": masked(letter.failure_error),
        "headers": [_header_document(name, raw) for name, raw in letter.headers],
    }


def _header_document(name: str, raw: bytes | None) -> dict[str, Any]:
    value, encoding = shown_header(name, raw)
    return {"name": name, "value": value, "encoding": encoding}


def survey_document(bootstrap: str, surveys: list[DlqSurvey]) -> dict[str, Any]:
    """Each DLQ's counts and its columns counted over the records scanned: event types,
    projects and media (distinct, without one, the most frequent) and attempts."""
    return {
        "bootstrap_servers": bootstrap,
        "dlqs": [
            {
                "dlq": s.dlq.value,
                "topic": s.topic,
                "exists": s.exists,
                "partitions": s.partitions,
                "messages": s.messages,
                "oldest": instant(s.oldest),
                "newest": instant(s.newest),
                "scanned": s.scanned,
                "categories": dict(s.categories.most_common()),
                "error_classes": dict(s.error_classes.most_common()),
                "top_errors": [
                    {"error_class": cls, "error_message": masked(msg), "count": n}
                    for (cls, msg), n in s.errors.most_common(TOP)
                ],
                **_tally_document(s.columns),
            }
            for s in surveys
        ],
    }


def outcome_document(outcome: ReplayOutcome, force: str | None = None) -> dict[str, Any]:
    """The summary of a replay; ``force`` is the command that sends its parked records."""
    done = outcome.done
    return {
        "dlq": outcome.dlq.value,
        "topic": outcome.topic,
        "session": outcome.session,
        "group": outcome.group,
        "dry_run": outcome.dry_run,
        "replayed": done.replayed,
        "skipped_by_filter": done.skipped,
        "parked": done.parked.total,
        "parked_records": [vars(p) for p in done.parked.shown],
        "force_parked": force,
        "truncated": done.truncated.total,
        "truncated_records": [vars(p) for p in done.truncated.shown],
        "by_target": dict(done.by_target.most_common()),
        "by_category": dict(done.by_category.most_common()),
        "by_error": dict(masked_counts(done.by_error).most_common()),
        "start_offsets": _keyed(outcome.starts),
        "end_offsets": _keyed(outcome.ends),
        "committed_offsets": _keyed(outcome.committed),
        "stopped_at_max": outcome.stopped_at_max,
        "interrupted": outcome.interrupted,
        "warnings": list(outcome.warnings),
    }


def plan_document(plan: PurgePlan, *, dry_run: bool, removed: int) -> dict[str, Any]:
    return {
        "dlq": plan.dlq.value,
        "topic": plan.topic,
        "before": instant(plan.before),
        "dry_run": dry_run,
        "to_remove": plan.removed,
        "removed": removed,
        "partitions": [
            {
                "partition": c.partition,
                "low": c.low,
                "cut": c.cut,
                "high": c.high,
                "to_remove": c.removed,
            }
            for c in plan.partitions
        ],
    }


def _keyed(offsets: dict[int, int]) -> dict[str, int]:
    """JSON object keys are strings: partition numbers become ``"0"``, ``"1"``…"""
    return {str(p): o for p, o in sorted(offsets.items())}
