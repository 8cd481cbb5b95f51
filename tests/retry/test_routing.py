"""Failure routing: transient climbs the tiers, permanent goes to the DLQ at once, auth spends
no attempt, and after MAX_RETRIES the DLQ."""

from __future__ import annotations

from datetime import timedelta

import pytest

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import FailureInfo
from claimx_flow.routing.failures import READ_AT_HEADER, FailureRouter, read_position
from claimx_flow.routing.tiers import enrichment_ladder

SETTINGS = Settings()


def router() -> FailureRouter:
    return FailureRouter.for_stage(
        SETTINGS, "enrich", SETTINGS.claimx_enrichment_dlq_topic, enrichment_ladder(SETTINGS)
    )


def fail(record: KafkaRecord, category: ErrorCategory) -> tuple[KafkaRecord, FailureInfo, str]:
    out = router().route(record, reason="boom", error_class="X", category=category)
    info = FailureInfo.from_headers(out.headers)
    # What the retry stage sends back to the pending topic, read again by the stage.
    again = KafkaRecord(out.topic, 0, record.offset + 100, None, out.key, out.value, out.headers)
    return again, info, out.topic


def test_transient_failures_climb_every_tier_then_reach_the_dlq() -> None:
    record = KafkaRecord(
        "claimx.enrichment.pending", 3, 17, 1_700_000_000_000, b"p", b"{}", [("x", b"1")]
    )
    topics, infos = [], []
    for _ in range(5):
        record, info, topic = fail(record, ErrorCategory.TRANSIENT)
        topics.append(topic)
        infos.append(info)
    assert topics == [*SETTINGS.enrichment_retry_topics, SETTINGS.claimx_enrichment_dlq_topic]
    assert [i.attempt for i in infos] == [1, 2, 3, 4, 5]
    for info, delay in zip(infos, SETTINGS.retry_delays, strict=False):
        assert info.due_at == info.last_failed_at + timedelta(seconds=delay)
    assert infos[-1].due_at is None
    # The origin stays the first one, whatever topic the message was read from later.
    assert {(i.original_topic, i.original_partition, i.original_offset) for i in infos} == {
        ("claimx.enrichment.pending", 3, 17)
    }
    assert ("x", b"1") in record.headers  # other headers travel along


def test_permanent_failures_skip_the_tiers() -> None:
    record = KafkaRecord("claimx.enrichment.pending", 0, 1, None, b"p", b"{}")
    _, info, topic = fail(record, ErrorCategory.PERMANENT)
    assert topic == SETTINGS.claimx_enrichment_dlq_topic and info.attempt == 1


@pytest.mark.parametrize("failures_before", [0, 2])
def test_auth_failures_wait_in_a_tier_without_spending_attempts(failures_before: int) -> None:
    record = KafkaRecord("claimx.enrichment.pending", 0, 1, None, b"p", b"{}")
    for _ in range(failures_before):
        record, _, _ = fail(record, ErrorCategory.TRANSIENT)
    for _ in range(6):  # however often the credentials are wrong, the message is kept
        record, info, topic = fail(record, ErrorCategory.AUTH)
        assert topic == SETTINGS.enrichment_retry_topics[max(failures_before, 1) - 1]
        assert info.attempt == max(failures_before, 1)


def test_a_replayed_message_starts_the_ladder_again() -> None:
    record = KafkaRecord("claimx.enrichment.pending", 0, 1, None, b"p", b"{}")
    for _ in range(5):
        record, _, _ = fail(record, ErrorCategory.TRANSIENT)  # in the DLQ after five failures
    info = FailureInfo.from_headers(record.headers)
    replayed_headers = info.model_copy(update={"attempt": 0, "replay_count": 1}).to_headers()
    replayed = KafkaRecord("claimx.enrichment.pending", 0, 99, None, b"p", b"{}", replayed_headers)
    _, again, topic = fail(replayed, ErrorCategory.TRANSIENT)
    assert topic == SETTINGS.enrichment_retry_topics[0]
    assert (again.attempt, again.replay_count) == (1, 1)


def test_a_copy_names_where_this_stage_read_its_message() -> None:
    """Each routing names its own read, not the one an earlier stage or attempt made; a row
    refused while the rest of its message went on names none (a restart must read it again)."""
    record = KafkaRecord("claimx.enrichment.pending", 3, 17, None, b"p", b"{}")
    again, _, _ = fail(record, ErrorCategory.TRANSIENT)
    positions = [value for name, value in again.headers if name == READ_AT_HEADER]
    assert [read_position(p) for p in positions] == [("claimx.enrichment.pending", 3, 17)]

    twice = router().route(again, reason="boom", error_class="X", category=ErrorCategory.TRANSIENT)
    positions = [value for name, value in twice.headers if name == READ_AT_HEADER]
    assert [read_position(p) for p in positions] == [(again.topic, 0, 117)]

    partly = router().route(
        again, reason="row", error_class="X", category=ErrorCategory.PERMANENT, whole=False
    )
    assert READ_AT_HEADER not in dict(partly.headers)


@pytest.mark.parametrize("value", [None, b"", b"3:17", b"x:17:t", b"3:y:t", b"\xff:1:t"])
def test_a_read_at_header_that_is_not_one_names_nothing(value: bytes | None) -> None:
    assert read_position(value) is None
