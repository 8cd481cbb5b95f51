"""Settings for one test's own pipeline: every topic under a unique prefix (created), its own
data directory, and, when asked, the API simulator with its credentials."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client, ensure_topics, pipeline_topics
from claimx_flow.lab.simulator import RunningSimulator
from tests.simulator_fixtures import SIMULATOR_PASSWORD, SIMULATOR_USERNAME

TOPICS = {
    "claimx_events_topic": "events.raw",
    "claimx_events_dlq_topic": "events.dlq",
    "claimx_enrichment_pending_topic": "enrichment.pending",
    "claimx_enrichment_dlq_topic": "enrichment.dlq",
    "claimx_downloads_pending_topic": "downloads.pending",
    "claimx_downloads_cached_topic": "downloads.cached",
    "claimx_downloads_results_topic": "downloads.results",
    "claimx_downloads_dlq_topic": "downloads.dlq",
}


def isolated_settings(
    kafka_bootstrap: str,
    data_dir: Path,
    *,
    sim: RunningSimulator | None = None,
    create_topics: bool = True,
    **overrides: Any,
) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "claimx_topic_partitions": 2,
        "claimx_data_dir": data_dir,
        "claimx_snapshot_interval_seconds": 1,
        **{field: f"{prefix}.{name}" for field, name in TOPICS.items()},
    }
    if sim is not None:
        values |= {
            "claimx_api_url": sim.api_url,
            "claimx_api_username": SIMULATOR_USERNAME,
            "claimx_api_password": SecretStr(SIMULATOR_PASSWORD),
            "claimx_api_timeout_seconds": 5,
        }
    settings = Settings(**(values | overrides))
    if create_topics:
        ensure_topics(admin_client(settings), pipeline_topics(settings))
    return settings
