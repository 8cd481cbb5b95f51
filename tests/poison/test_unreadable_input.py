"""A message the Kafka client cannot read, in a stage's input: its record alone goes to the
stage's DLQ, once per lost offset, and the stage reads on past it.

Found failing: librdkafka never moves past a message it cannot read; it fetches the same batch
again and reports the same error at the same offset. The stages' Kafka input took each report as
a new record, so the stage wrote a DLQ copy of the same offset again and again, without end, and
never read what came after it. Made with a batch damaged where the broker keeps it
(``tests/kafka_damage.py``), read by a real ``python -m bytewax.run dataflows.ingest``.
"""

from __future__ import annotations

import json
from pathlib import Path

from claimx_flow.errors import ErrorCategory
from claimx_flow.models import FailureInfo
from tests.isolation import isolated_settings
from tests.kafka_damage import damage_lost, fill
from tests.poison.harness import Read, read_topic, run_stage_process, table


def event(event_id: str) -> bytes:
    return json.dumps(
        {
            "eventId": event_id,
            "eventType": "PROJECT_CREATED",
            "projectId": "7001",
            "ingestedAt": "2026-01-02T03:04:05Z",
        }
    ).encode()


def test_a_message_the_client_cannot_read_is_dead_lettered_once_and_the_stage_reads_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    topic = settings.claimx_events_topic
    # offsets: a good event at 0, a lost batch of three at 1-3, good events at 4 and 5
    fill(settings, topic, [event("good-0"), event("good-4"), event("good-5")], 3, None, event("x"))
    damage_lost(settings, topic, 3)

    exit = run_stage_process(settings, "ingest", tmp_path / "logs", timeout_s=120)

    assert exit.returncode == 0, exit.tail
    stored = sorted(row["event_id"] for row in table(settings, "claimx_events"))
    assert stored == ["good-0", "good-4", "good-5"]
    tasks = read_topic(settings, settings.claimx_enrichment_pending_topic)
    assert sorted(json.loads(t.value or b"")["event_id"] for t in tasks) == stored
    letters = read_topic(settings, settings.claimx_events_dlq_topic)
    found = sorted((info.original_topic, info.original_offset) for info in map(_info, letters))
    assert found == [(topic, 1), (topic, 2), (topic, 3)]
    for letter in letters:
        info = _info(letter)
        assert info.stage == "ingest" and info.error_category is ErrorCategory.PERMANENT
        assert info.error_message.startswith("unreadable by the Kafka client: ")


def _info(letter: Read) -> FailureInfo:
    found = letter.failure()
    assert found is not None, letter
    return found
