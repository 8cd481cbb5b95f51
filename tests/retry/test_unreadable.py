"""A message in a retry tier that the Kafka client cannot read ends in the DLQ of its tier's
ladder, with the reason and where it was; its batch-mates go back to their pending topic; and a
SIGKILL after that neither loses nor repeats anything.

How the unreadable message is made: ``tests/kafka_damage.py`` (a batch damaged at rest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.lab.pipeline import Pipeline
from claimx_flow.models import FailureInfo
from tests import kafka_damage
from tests.dlq.helpers import Read, read_all
from tests.kafka_damage import damage_lost


def fill(settings: Settings, tier: str, goods: list[bytes], lost: int) -> None:
    """``kafka_damage.fill``, written long enough ago to be due at once."""
    written = int((datetime.now(UTC) - timedelta(seconds=30)).timestamp() * 1000)
    kafka_damage.fill(settings, tier, goods, lost, written_ms=written)


def until(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f}s: {what}"
        time.sleep(0.5)


def values(settings: Settings, topic: str) -> list[bytes]:
    return sorted(read.value or b"" for read in read_all(settings.kafka_bootstrap_servers, topic))


def letters(settings: Settings, dlq: str) -> list[Read]:
    return read_all(settings.kafka_bootstrap_servers, dlq)


def assert_dead_lettered(letters: list[Read], tier: str, offsets: list[int]) -> None:
    """One DLQ copy per lost offset, each saying why and where it was."""
    found: dict[int, int] = {}
    for letter in letters:
        info = FailureInfo.maybe_from_headers(list(letter.headers.items()))
        assert info is not None, letter
        assert letter.value is None
        assert info.stage == "retry"
        assert info.error_category is ErrorCategory.PERMANENT
        assert info.error_class == "KafkaMessageError"
        assert info.error_message.startswith("unreadable by the Kafka client: ")
        assert "Decompression" in info.error_message  # librdkafka's own words
        assert (info.original_topic, info.original_partition) == (tier, 0)
        found[info.original_offset] = found.get(info.original_offset, 0) + 1
    assert found == dict.fromkeys(offsets, 1)


def test_an_unreadable_message_in_a_tier_is_dead_lettered_and_its_batch_mates_released(
    retry_settings: Settings, retry_stage: Pipeline
) -> None:
    settings = retry_settings
    enrichment_tier = settings.enrichment_retry_topics[0]
    download_tier = settings.download_retry_topics[1]
    # offsets: good at 0, a lost batch at 1 (enrichment: one record; download: three, 1-3)
    fill(settings, enrichment_tier, [b"e-0", b"e-2", b"e-3"], lost=1)
    fill(settings, download_tier, [b"d-0", b"d-4", b"d-5"], lost=3)
    damage_lost(settings, enrichment_tier, 1)
    damage_lost(settings, download_tier, 3)

    enrichment_pending = settings.claimx_enrichment_pending_topic
    downloads_pending = settings.claimx_downloads_pending_topic
    enrichment_dlq = settings.claimx_enrichment_dlq_topic
    downloads_dlq = settings.claimx_downloads_dlq_topic

    def settled(marks: int = 0) -> bool:
        return (
            len(values(settings, enrichment_pending)) >= 3 + marks
            and len(values(settings, downloads_pending)) >= 3 + marks
            and len(letters(settings, enrichment_dlq)) >= 1
            and len(letters(settings, downloads_dlq)) >= 3
        )

    retry_stage.start(["retry"])
    until("the batch-mates released and the lost records dead-lettered", settled)
    assert values(settings, enrichment_pending) == [b"e-0", b"e-2", b"e-3"]
    assert values(settings, downloads_pending) == [b"d-0", b"d-4", b"d-5"]
    assert_dead_lettered(letters(settings, enrichment_dlq), enrichment_tier, [1])
    assert_dead_lettered(letters(settings, downloads_dlq), download_tier, [1, 2, 3])
    assert not retry_stage.dead(), "the retry stage stopped"

    # The positions past the lost records are in recovery: a crash re-reads none of them.
    time.sleep(4)  # a few snapshots (one a second) after they were written
    retry_stage.kill("retry")
    retry_stage.restart("retry")
    fill(settings, enrichment_tier, [b"e-mark"], lost=0)
    fill(settings, download_tier, [b"d-mark"], lost=0)
    until("the marks released after the restart", lambda: settled(marks=1))
    time.sleep(2)  # and nothing more
    assert values(settings, enrichment_pending) == [b"e-0", b"e-2", b"e-3", b"e-mark"]
    assert values(settings, downloads_pending) == [b"d-0", b"d-4", b"d-5", b"d-mark"]
    assert_dead_lettered(letters(settings, enrichment_dlq), enrichment_tier, [1])
    assert_dead_lettered(letters(settings, downloads_dlq), download_tier, [1, 2, 3])
