"""Poison the stages do not survive yet: each test here fails today because of a stage bug it
names, with the minimal example the property tests found. They are skipped in CI so it stays
green; run them with ``CLAIMX_POISON_PENDING=1 .venv/bin/pytest tests/poison/test_pending.py``
and move each to its boundary's module once it passes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.isolation import isolated_settings
from tests.poison.harness import largest_accepted
from tests.poison.strategies import Generated
from tests.poison.test_ingest_boundary import (
    BROKER_DEFAULT,
    LARGE_PARTS,
    RAW_LIMIT,
    RawRecord,
    check_ingest,
    padded_event,
    run_ingest,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("CLAIMX_POISON_PENDING"),
    reason="fails until a DLQ copy always fits its topic, whatever part of the record is large",
)


# Ingest: a DLQ copy whose key or headers are large ------------------------------------------


@pytest.mark.parametrize("part", ["key", "one header", "1000 headers"])
@pytest.mark.parametrize("raw_limit", [BROKER_DEFAULT, RAW_LIMIT], ids=["1MB-raw", "4MiB-raw"])
def test_a_dead_letter_copy_with_a_large_key_or_headers_fits_the_dlq(
    kafka_bootstrap: str, tmp_path: Path, raw_limit: int, part: str
) -> None:
    """Fails until the router makes a DLQ copy fit whatever part of the record is large.

    The router truncates only the value; a record whose key or headers fill the raw topic's
    limit (an 8-byte value ``b"not json"`` and a 1,048,508-byte key, on a topic with the
    broker's default 1 MB) gets a DLQ copy of key + headers + ~900 bytes of ``claimx.*``
    headers, which the broker refuses (``MSG_SIZE_TOO_LARGE``): the ingest process exits 1
    (``DeliveryError: … events.dlq: Broker: Message size too large``), the good event behind
    it never reaches ``claimx_events``, and recovery replays the same record into the same
    death. With the raw topic raised to 4 MiB any key or headers over 1 MB do the same.
    """
    make = LARGE_PARTS[part]
    probe = isolated_settings(kafka_bootstrap, tmp_path / "probe", create_topics=False)
    size = largest_accepted(probe, raw_limit, make, 1000, raw_limit)
    good = Generated(RawRecord(padded_event(300, "after-the-large-one"), b"k"), "good", "good")
    generated = [Generated(make(size), "poison", f"{part} of {size} bytes"), good]
    settings, placed, exit = run_ingest(kafka_bootstrap, tmp_path, generated, raw_limit)
    check_ingest(settings, generated, placed, exit)
