"""The retry tiers' boundary: generated records through a real retry process.

A tier topic is written by our stages, but its records carry what the failed message carried:
any key, value and headers a producer gave it, failure headers at or past their edge, a
``claimx.due_at`` or ``claimx.read_at`` of any bytes, and a timestamp from its producer's clock,
which can be anything from the int64 range to a year ahead of ours (the broker takes up to an
hour ahead by default; these tiers take any). Hypothesis writes a batch of
such records to the enrichment and download tiers (delays of 1 to 4 seconds), and
``python -m bytewax.run dataflows.retry`` runs until the tiers are drained. It must end by
itself with 0, and every record must be back in its tier's pending topic exactly once, as the
tier holds it, naming only where the retry stage read it (``claimx.read_at``); nothing in a
DLQ.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.routing.failures import READ_AT_HEADER
from claimx_flow.routing.tiers import DUE_HEADER, all_tiers
from tests.isolation import isolated_settings
from tests.poison.checks import Findings
from tests.poison.harness import (
    BATCH,
    Placed,
    RawRecord,
    poison_settings,
    produce_exact,
    read_topic,
    run_stage_process,
    runs_within,
)
from tests.poison.strategies import header_values, headers, keys, timestamps
from tests.topic_config import set_topic_config

DELAYS = [1, 2, 3, 4]
MINUTE_MS = 60_000
YEAR_MS = 365 * 24 * 60 * MINUTE_MS


def ahead_of_now(offset_ms: int) -> int:
    return int(time.time() * 1000) + offset_ms


@st.composite
def tier_records(draw: st.DrawFn) -> RawRecord:
    """A record as a tier may hold it: any content, any of our headers, any timestamp."""
    sent = list(draw(headers))
    for name in (DUE_HEADER, READ_AT_HEADER):
        if draw(st.booleans()):
            sent.append((name, draw(header_values)))
    timestamp = draw(
        st.one_of(
            timestamps,
            # a producer's clock ahead of ours: by minutes to a year, longer than the run
            st.sampled_from([10 * MINUTE_MS, 60 * MINUTE_MS, 24 * 60 * MINUTE_MS, YEAR_MS]).map(
                ahead_of_now
            ),
        )
    )
    return RawRecord(
        value=draw(st.one_of(st.none(), st.binary(max_size=120))),
        key=draw(keys),
        headers=sent,
        timestamp_ms=timestamp,
    )


def normal(headers: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """Headers as a reader sees them (a null value reads as empty)."""
    return [(name, value or b"") for name, value in headers]


@runs_within(150)
@poison_settings
@given(data=st.data())
def test_every_tier_record_goes_back_to_its_pending_topic_once_as_it_was(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    tmp = tmp_path_factory.mktemp("retry-poison")
    settings = isolated_settings(kafka_bootstrap, tmp / "data", retry_delays=DELAYS)
    tiers = all_tiers(settings)
    batch = data.draw(
        st.lists(st.tuples(st.sampled_from(tiers), tier_records()), min_size=1, max_size=BATCH),
        label="records",
    )
    placed: dict[str, list[Placed]] = {}
    for tier in tiers:
        # The broker refuses a timestamp over an hour ahead of its clock by default; a topic
        # may allow any, and a clock within that hour is ahead enough to hold a partition.
        set_topic_config(settings, tier.topic, message_timestamp_after_max_ms=str(2**63 - 1))
        mine = [record for at, record in batch if at == tier]
        placed[tier.topic] = produce_exact(settings, tier.topic, mine) if mine else []

    findings = Findings("retry boundary")
    findings.stage_ran(run_stage_process(settings, "retry", tmp / "logs", timeout_s=120))

    released: dict[str, list] = defaultdict(list)
    for pending in {tier.pending_topic for tier in tiers}:
        for read in read_topic(settings, pending):
            released[read.header(READ_AT_HEADER) or "none"].append(read)
    for tier in tiers:
        # As the tier holds it: the client writes a header name up to its first NUL
        stored = {read.offset: read for read in read_topic(settings, tier.topic)}
        for item in placed[tier.topic]:
            position = f"{item.partition}:{item.offset}:{tier.topic}"
            copies = released.pop(position, [])
            if len(copies) != 1:
                findings.add(f"{position}: released {len(copies)} time(s)", item.record)
                continue
            (copy,) = copies
            kept = [(n, v) for n, v in stored[item.offset].headers if n != READ_AT_HEADER]
            expected = normal([*kept, (READ_AT_HEADER, position.encode())])
            if copy.topic != tier.pending_topic:
                findings.add(f"{position}: released to {copy.topic}", item.record)
            if (copy.key, copy.value or None) != (item.record.key, item.record.value or None):
                findings.add(f"{position}: key or value changed", item.record)
            if copy.headers != expected:
                findings.add(f"{position}: headers changed: {copy.headers!r}", item.record)
    for position, copies in released.items():
        findings.add(f"{len(copies)} release(s) of no record produced: read_at {position!r}")
    for dlq in (settings.claimx_enrichment_dlq_topic, settings.claimx_downloads_dlq_topic):
        letters = read_topic(settings, dlq)
        if letters:
            findings.add(f"{len(letters)} record(s) in {dlq}, every one was readable")
    findings.check()
