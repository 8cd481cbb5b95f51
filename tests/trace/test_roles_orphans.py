"""``claimx trace`` and orphan tiers: after ``RETRY_DELAYS`` changes, the retry stage still
drains the old tier topics, so an event can wait in one; the trace must find it there and say
so. A real broker, the retry copy written as the enrich stage writes one, no stage running."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.clients import producer_config
from claimx_flow.kafka.topics import admin_client, await_leaders
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.models import EnrichmentTask, FailureInfo, MessageIds, MessageOrigin
from claimx_flow.trace.roles import Role, topic_roles
from tests.isolation import isolated_settings

EVENT, PROJECT = "evt-held-in-an-orphan-tier", "5000301"


def test_an_event_held_in_an_orphan_tier_is_in_retry(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    pending = settings.claimx_enrichment_pending_topic
    orphan = f"{pending}.retry.7m"  # a tier of an earlier RETRY_DELAYS
    admin = admin_client(settings)
    admin.create_topics([NewTopic(orphan, 2, 1)])[orphan].result(timeout=30)
    await_leaders(admin, [orphan])
    now = datetime.now(UTC)
    task = EnrichmentTask(
        event_id=EVENT, event_type="PROJECT_CREATED", project_id=PROJECT, ingested_at=now
    )
    failure = FailureInfo.from_reason(
        "API answered 503",
        error_class="ApiUnavailable",
        origin=MessageOrigin(pending, 0, 3),
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
        due_at=now + timedelta(minutes=7),
        ids=MessageIds(PROJECT, EVENT),
    )
    producer = Producer(producer_config(settings))  # the stages' partitioner, key by project
    producer.produce(orphan, key=PROJECT, value=task.to_json(), headers=failure.to_headers())
    assert producer.flush(30) == 0

    roles = [(r.topic, r.role, r.tier_delay_s) for r in topic_roles(settings)]
    tiers = [r for r in roles if r[1] is Role.ENRICHMENT_RETRY]
    assert tiers[-1] == (orphan, Role.ENRICHMENT_RETRY, 420)  # after the configured ones

    env = {**settings_env(settings), "CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}
    result = CliRunner().invoke(app, ["trace", EVENT, "-o", "json", "--since", "1h"], env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    verdict = document["verdict"]
    assert verdict["state"] == "retry" and verdict["topic"] == orphan, verdict
    assert verdict["text"].startswith(f"in retry until {failure.due_at:%Y-%m-%dT%H:%M}")
    (held,) = [step for step in document["timeline"] if step.get("topic") == orphan]
    assert held["role"] == "enrichment_retry" and held["tier_delay_s"] == 420
