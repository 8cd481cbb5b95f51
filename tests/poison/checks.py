"""The law, checked record by record: each generated record in exactly the place it belongs,
and every way it went astray collected into one failure message (so a batch of thirty names
each culprit, with no shrinking needed)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from claimx_flow.routing.failures import (
    ORIGINAL_KEY_SHA256_HEADER,
    ORIGINAL_KEY_SIZE_HEADER,
    ORIGINAL_SHA256_HEADER,
    ORIGINAL_SIZE_HEADER,
    TRUNCATED_HEADER,
)
from tests.poison.harness import RawRecord, Read, StageExit


@dataclass
class Findings:
    """Problems found, each with the record that caused it."""

    what: str
    problems: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    """What became of the generated records, by kind (printed with CLAIMX_POISON_VERBOSE)."""

    def saw(self, kind: str, outcome: str) -> None:
        self.outcomes[f"{kind} -> {outcome}"] += 1

    def add(self, problem: str, record: RawRecord | None = None) -> None:
        text = problem + (f"\n      record: {record.describe()}" if record else "")
        self.problems.append(text)

    def stage_ran(self, exit: StageExit) -> None:
        """The stage process ended by itself, with 0, having drained its input."""
        if exit.returncode != 0:
            state = "did not end" if exit.returncode is None else f"exited {exit.returncode}"
            errors = "\n".join(exit.errors()[:15]) or exit.tail
            self.add(f"the {exit.stage} stage {state} (after {exit.seconds:.0f}s):\n{errors}")

    def check(self) -> None:
        if os.environ.get("CLAIMX_POISON_VERBOSE"):
            for line, count in sorted(self.outcomes.items()):
                print(f"{self.what[:40]}: {count:3d} x {line}")
        if self.problems:
            shown = "\n  - ".join(self.problems[:40])
            more = f"\n  … and {len(self.problems) - 40} more" if len(self.problems) > 40 else ""
            raise AssertionError(f"{self.what}: {len(self.problems)} problem(s)\n  - {shown}{more}")


def by_origin(reads: list[Read]) -> dict[tuple[str, int, int], list[Read]]:
    """Failure records by where their message was first read (topic, partition, offset)."""
    found: dict[tuple[str, int, int], list[Read]] = defaultdict(list)
    for read in reads:
        info = read.failure()
        if info is None:
            found[("?", read.partition, read.offset)].append(read)
            continue
        found[(info.original_topic, info.original_partition, info.original_offset)].append(read)
    return found


def check_dead_letter(
    findings: Findings,
    letter: Read,
    original: RawRecord,
    *,
    stage: str,
) -> None:
    """A DLQ copy: the original message (or its truncated head, said so in its headers), its
    key, a reason and the stage. (That its size fits the DLQ the broker has said by taking
    it; its limit applies after compression.)"""
    info = letter.failure()
    if info is None:
        findings.add(f"{letter.topic}@{letter.offset}: unreadable failure headers", original)
        return
    if not info.error_message.strip():
        findings.add(f"{letter.topic}@{letter.offset}: empty claimx.error_message", original)
    if info.stage != stage:
        findings.add(f"{letter.topic}@{letter.offset}: stage {info.stage}, not {stage}", original)
    if letter.key != original.key and not _key_cut_as_said(letter, original.key or b""):
        findings.add(f"{letter.topic}@{letter.offset}: key changed", original)
    value = original.value
    if letter.value == value or (letter.value in (None, b"") and value in (None, b"")):
        return
    if stage != "ingest" and _same_task(letter.value, value):
        return  # a task's copy may count its attempts in its body (``retry_count``)
    truncated = letter.header(TRUNCATED_HEADER)
    if truncated != "true":
        findings.add(f"{letter.topic}@{letter.offset}: value changed, not truncated", original)
        return
    full = value or b""
    if letter.header(ORIGINAL_SIZE_HEADER) != str(len(full)):
        findings.add(f"{letter.topic}@{letter.offset}: wrong {ORIGINAL_SIZE_HEADER}", original)
    if letter.header(ORIGINAL_SHA256_HEADER) != hashlib.sha256(full).hexdigest():
        findings.add(f"{letter.topic}@{letter.offset}: wrong {ORIGINAL_SHA256_HEADER}", original)
    if not full.startswith(letter.value or b""):
        findings.add(f"{letter.topic}@{letter.offset}: truncated value is not a prefix", original)


def _key_cut_as_said(letter: Read, key: bytes) -> bool:
    """A key too large for the DLQ may be cut: to a prefix, its size and sha256 in headers."""
    return (
        letter.header(TRUNCATED_HEADER) == "true"
        and key.startswith(letter.key or b"")
        and letter.header(ORIGINAL_KEY_SIZE_HEADER) == str(len(key))
        and letter.header(ORIGINAL_KEY_SHA256_HEADER) == hashlib.sha256(key).hexdigest()
    )


def _same_task(copy: bytes | None, original: bytes | None) -> bool:
    """Both are the same JSON object but for ``retry_count``."""
    try:
        left, right = json.loads(copy or b""), json.loads(original or b"")
    except (ValueError, RecursionError):
        return False
    if not isinstance(left, dict) or not isinstance(right, dict):
        return False
    left.pop("retry_count", None)
    right.pop("retry_count", None)
    return bool(left == right)


def no_duplicates(findings: Findings, table: str, keys: list[object]) -> None:
    twice = [key for key, count in Counter(keys).items() if count > 1]
    if twice:
        findings.add(f"{table}: {len(twice)} key(s) stored more than once, e.g. {twice[:3]}")
