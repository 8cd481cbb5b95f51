"""The three dead-letter queues by the names operators type, and where their messages go back to.

A DLQ record remembers the topic it was first read from (``claimx.original_topic``); that is the
best place to replay it to, as long as it is one of the pipeline's inputs. A retry tier counts
as its pending topic (a replay should not wait out a delay again), and anything else — an upload
failure first read from ``downloads.cached``, whose cache file may be gone — goes back to the
DLQ's own pending topic to be worked from the start.
"""

from __future__ import annotations

from enum import StrEnum

from claimx_flow.config import Settings
from claimx_flow.models import FailureInfo


class DlqName(StrEnum):
    """The DLQs as the CLI names them (the runbook's ``enrichment``/``download``, plus events)."""

    EVENTS = "events"
    ENRICHMENT = "enrichment"
    DOWNLOAD = "download"


def dlq_topic(settings: Settings, dlq: DlqName) -> str:
    return {
        DlqName.EVENTS: settings.claimx_events_dlq_topic,
        DlqName.ENRICHMENT: settings.claimx_enrichment_dlq_topic,
        DlqName.DOWNLOAD: settings.claimx_downloads_dlq_topic,
    }[dlq]


def pending_topic(settings: Settings, dlq: DlqName) -> str:
    """Where a DLQ's messages are worked from the start: the input of the stage that failed."""
    return {
        DlqName.EVENTS: settings.claimx_events_topic,
        DlqName.ENRICHMENT: settings.claimx_enrichment_pending_topic,
        DlqName.DOWNLOAD: settings.claimx_downloads_pending_topic,
    }[dlq]


def input_topics(settings: Settings) -> dict[str, str]:
    """Each topic a replay may name as origin → the topic to send it to."""
    topics = {
        settings.claimx_events_topic: settings.claimx_events_topic,
        settings.claimx_enrichment_pending_topic: settings.claimx_enrichment_pending_topic,
        settings.claimx_downloads_pending_topic: settings.claimx_downloads_pending_topic,
    }
    for tier in settings.enrichment_retry_topics:
        topics[tier] = settings.claimx_enrichment_pending_topic
    for tier in settings.download_retry_topics:
        topics[tier] = settings.claimx_downloads_pending_topic
    return topics


def replay_target(settings: Settings, dlq: DlqName, failure: FailureInfo | None) -> str:
    """The origin named in the headers when it is a pipeline input, else the DLQ's pending topic."""
    if failure is not None:
        target = input_topics(settings).get(failure.original_topic)
        if target is not None:
            return target
    return pending_topic(settings, dlq)
