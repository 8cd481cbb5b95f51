"""When a tier releases a message, for whatever timestamp and due header it carries.

The record's timestamp comes from its producer's clock and the header from whoever wrote it:
neither may stop the retry stage (it would stop at the same message on every start), and
neither may release a message before the tier's delay after it was written, nor hold it (and
the partition behind it) past twice that delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.routing.tiers import DUE_HEADER, Tier, release_time

TIER = Tier("claimx.enrichment.pending.retry.5m", 300, "claimx.enrichment.pending")

timestamps = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 253_402_300_799_999),  # within what a datetime holds
)
due_headers = st.one_of(
    st.binary(max_size=40),
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda at: at.isoformat().encode()),
)


@given(timestamp_ms=timestamps, due=st.none() | due_headers)
def test_any_timestamp_and_header_give_a_release_time(
    timestamp_ms: int | None, due: bytes | None
) -> None:
    headers = [] if due is None else [(DUE_HEADER, due)]
    record = KafkaRecord(TIER.topic, 0, 7, timestamp_ms, b"k", b"v", headers)
    before = datetime.now(UTC)
    released = release_time(record, TIER)
    assert released.tzinfo is not None
    try:
        written = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)  # type: ignore[operator]
    except (TypeError, OverflowError, OSError, ValueError):
        written = None
    after = datetime.now(UTC)
    if written is not None and written.year < 9999:
        # written no later than it was read: a timestamp ahead of the clock counts as now
        assert min(written, before) + delay(1) <= released <= min(written, after) + delay(2)
    else:  # no moment a datetime holds: written when read
        assert before + delay(1) <= released <= after + delay(2)


def test_a_timestamp_ahead_of_the_clock_does_not_hold_its_partition() -> None:
    """A producer whose clock is a year ahead: its message waits the tier's delay from now."""
    ahead = datetime.now(UTC) + timedelta(days=365)
    record = KafkaRecord(TIER.topic, 0, 7, int(ahead.timestamp() * 1000), b"k", b"v")
    before = datetime.now(UTC)
    released = release_time(record, TIER)
    assert before + delay(1) <= released <= datetime.now(UTC) + delay(1)


def delay(times: int) -> timedelta:
    return timedelta(seconds=times * TIER.delay_s)


def test_a_due_time_past_twice_the_delay_releases_at_twice_the_delay() -> None:
    """A clock gone wrong (or a producer not ours) cannot hold a tier's partition for years."""
    written = datetime(2024, 1, 4, 12, 0, tzinfo=UTC)
    headers = [(DUE_HEADER, b"9999-12-31T23:59:59+00:00")]
    record = KafkaRecord(TIER.topic, 0, 7, int(written.timestamp() * 1000), b"k", b"v", headers)
    assert release_time(record, TIER) == written + delay(2)


def test_a_due_time_between_the_delays_is_kept() -> None:
    written = datetime(2024, 1, 4, 12, 0, tzinfo=UTC)
    due = written + delay(1) + timedelta(seconds=30)
    headers = [(DUE_HEADER, due.isoformat().encode())]
    record = KafkaRecord(TIER.topic, 0, 7, int(written.timestamp() * 1000), b"k", b"v", headers)
    assert release_time(record, TIER) == due
