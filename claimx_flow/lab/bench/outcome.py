"""What a stage run left behind, as digests two runs of the same workload can be compared by.

A cluster of two processes must write what one process writes: the same Delta rows and the
same output messages. Runs differ in what no stage decides: their topic prefixes, the wall
clock (``created_at``, ``last_enriched_at``) and the simulator's link signatures, which are
signed at the moment it answers (the query of every URL, and the ``expires_at`` it implies).
Those are left out; everything else is compared row by row, in a canonical order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from claimx_flow.config import Settings
from claimx_flow.lab.bench import kafka_io
from claimx_flow.models.redaction import mask_url_queries

VOLATILE = frozenset({"created_at", "last_enriched_at", "expires_at"})
"""Columns and message fields set by the clock or the signer, not by the stage."""

Digests = dict[str, str]


def outcome(settings: Settings, outputs: Mapping[str, str]) -> Digests:
    """``rows:<table>`` for each Delta table, ``messages:<role>`` for each output topic
    (``outputs`` maps a role, such as ``tasks``, to this run's topic name): the count and a
    sha256 over the canonical rows."""
    digests = {f"rows:{name}": digest(rows) for name, rows in _tables(settings.tables_dir)}
    for role, topic in outputs.items():
        records = kafka_io.read_all(settings, topic)
        digests[f"messages:{role}"] = digest(
            {"key": (r.key or b"").decode("utf-8", "backslashreplace"), **_message(r.value)}
            for r in records
        )
    return digests


def differences(one: Digests, other: Digests) -> list[str]:
    """What differs between two runs' digests, by name (empty: identical)."""
    return sorted(name for name in one.keys() | other.keys() if one.get(name) != other.get(name))


def digest(rows: Iterable[Mapping[str, Any]]) -> str:
    """``<count>:<sha256>`` of the rows without their volatile fields, in sorted order."""
    lines = sorted(_canonical(row) for row in rows)
    sha = hashlib.sha256()
    for line in lines:
        sha.update(line.encode())
        sha.update(b"\n")
    return f"{len(lines)}:{sha.hexdigest()[:16]}"


def _canonical(row: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in row.items() if k not in VOLATILE}
    return mask_url_queries(json.dumps(kept, sort_keys=True, default=str))


def _message(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {"value": None}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {"value": value.decode("utf-8", "backslashreplace")}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _tables(tables_dir: Path) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    from deltalake import DeltaTable

    for log_dir in sorted(tables_dir.glob("*/_delta_log")):
        table = DeltaTable(str(log_dir.parent.resolve()))
        yield log_dir.parent.name, table.to_pyarrow_table().to_pylist()
