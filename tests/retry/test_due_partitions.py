"""One consumer per tier topic: a partition whose head waits does not hold back another
partition's due messages, and the retry stage holds one consumer per tier, not per partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.testing import cluster_main
from confluent_kafka import Producer

from claimx_flow.kafka.clients import client_config
from claimx_flow.routing.tiers import DUE_HEADER, all_tiers, enrichment_ladder
from dataflows import retry
from operators.due_time import DueTimeInput
from tests.dlq.helpers import read_all
from tests.isolation import isolated_settings


def test_a_waiting_head_holds_back_only_its_own_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)
    tier = enrichment_ladder(settings).tiers[0]
    written = datetime.now(UTC) - timedelta(seconds=tier.delay_s)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for partition, value, due_in_s in ((0, b"later", 4.0), (1, b"now", -1.0)):
        due = (written + timedelta(seconds=tier.delay_s + due_in_s)).isoformat().encode()
        producer.produce(
            tier.topic,
            key=value,
            value=value,
            partition=partition,
            headers=[(DUE_HEADER, due)],
            timestamp=int(written.timestamp() * 1000),
        )
    assert producer.flush(30) == 0

    started = datetime.now(UTC)
    cluster_main(retry.build(settings), [], 0)
    released = read_all(kafka_bootstrap, settings.claimx_enrichment_pending_topic)
    assert sorted(m.value or b"" for m in released) == [b"later", b"now"]
    assert (datetime.now(UTC) - started).total_seconds() >= 3  # "later" waited for its time


def test_the_retry_stage_reads_each_tier_through_one_consumer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    topics = [tier.topic for tier in all_tiers(settings)]
    source = DueTimeInput(client_config(settings), "g", topics, lambda r: datetime.now(UTC))
    assert source.list_parts() == topics  # one source partition, one consumer, per tier
