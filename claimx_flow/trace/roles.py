"""The pipeline's topics by what they hold for a trace, and how each is keyed.

Keys decide how much of a topic a trace reads: enrichment tasks (and their retry tiers and
DLQ copies, which keep the original key) are keyed by project id, everything about a media
file by media id; raw events may carry any key, so they are read in every partition.

Orphan tiers (``routing.tiers.orphan_names``: a tier topic ``RETRY_DELAYS`` no longer names)
are retry tiers too: the retry stage still drains them, so an event can wait in one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from claimx_flow.catalog import StageName
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import topic_names
from claimx_flow.routing.tiers import orphan_names


class Role(StrEnum):
    RAW = "raw_event"
    EVENTS_DLQ = "events_dlq"
    ENRICHMENT = "enrichment_task"
    ENRICHMENT_RETRY = "enrichment_retry"
    ENRICHMENT_DLQ = "enrichment_dlq"
    DOWNLOAD = "download_task"
    DOWNLOAD_RETRY = "download_retry"
    CACHED = "cached_download"
    RESULT = "upload_result"
    DOWNLOAD_DLQ = "download_dlq"


Key = Literal["any", "project", "media"]

PIPELINE_ORDER = {role: index for index, role in enumerate(Role)}
"""Where each role comes in the pipeline: the order of records with the same timestamp."""

RETRY_ROLES = frozenset({Role.ENRICHMENT_RETRY, Role.DOWNLOAD_RETRY})
DLQ_ROLES = frozenset({Role.EVENTS_DLQ, Role.ENRICHMENT_DLQ, Role.DOWNLOAD_DLQ})
ENRICHMENT_CHAIN = frozenset({Role.ENRICHMENT, Role.ENRICHMENT_RETRY, Role.ENRICHMENT_DLQ})
DOWNLOAD_CHAIN = frozenset(
    {Role.DOWNLOAD, Role.DOWNLOAD_RETRY, Role.CACHED, Role.RESULT, Role.DOWNLOAD_DLQ}
)
INGEST_CHAIN = frozenset({Role.RAW, Role.EVENTS_DLQ})

CONSUMER: dict[Role, StageName] = {
    Role.RAW: "ingest",
    Role.ENRICHMENT: "enrich",
    Role.ENRICHMENT_RETRY: "retry",
    Role.DOWNLOAD: "download",
    Role.DOWNLOAD_RETRY: "retry",
    Role.CACHED: "upload",
    Role.RESULT: "results",
}
"""The stage that reads each role's topic (DLQs: nobody until a replay)."""


@dataclass(frozen=True)
class TopicRole:
    topic: str
    role: Role
    key: Key
    tier_delay_s: int | None = None


def topic_roles(settings: Settings, existing: Collection[str] | None = None) -> list[TopicRole]:
    """Every pipeline topic with its role, in pipeline order, orphan tiers after the configured
    ones of their ladder. ``existing`` is the cluster's topic names; None asks the cluster."""
    delays = settings.retry_delays
    orphans = orphan_names(settings, topic_names(settings) if existing is None else existing)

    def held(pending: str, role: Role, key: Key) -> list[TopicRole]:
        return [
            TopicRole(t.topic, role, key, t.delay_s) for t in orphans if t.pending_topic == pending
        ]

    return [
        TopicRole(settings.claimx_events_topic, Role.RAW, "any"),
        TopicRole(settings.claimx_events_dlq_topic, Role.EVENTS_DLQ, "any"),
        TopicRole(settings.claimx_enrichment_pending_topic, Role.ENRICHMENT, "project"),
        *(
            TopicRole(topic, Role.ENRICHMENT_RETRY, "project", delay)
            for topic, delay in zip(settings.enrichment_retry_topics, delays, strict=True)
        ),
        *held(settings.claimx_enrichment_pending_topic, Role.ENRICHMENT_RETRY, "project"),
        TopicRole(settings.claimx_enrichment_dlq_topic, Role.ENRICHMENT_DLQ, "project"),
        TopicRole(settings.claimx_downloads_pending_topic, Role.DOWNLOAD, "media"),
        *(
            TopicRole(topic, Role.DOWNLOAD_RETRY, "media", delay)
            for topic, delay in zip(settings.download_retry_topics, delays, strict=True)
        ),
        *held(settings.claimx_downloads_pending_topic, Role.DOWNLOAD_RETRY, "media"),
        TopicRole(settings.claimx_downloads_cached_topic, Role.CACHED, "media"),
        TopicRole(settings.claimx_downloads_results_topic, Role.RESULT, "media"),
        TopicRole(settings.claimx_downloads_dlq_topic, Role.DOWNLOAD_DLQ, "media"),
    ]
