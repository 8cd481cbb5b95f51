"""Enrichment: ClaimX API calls for a batch of tasks, turned into table rows and downloads."""

from claimx_flow.enrichment.handlers import (
    KNOWN_EVENTS,
    Enriched,
    EnrichedBatch,
    Enricher,
    EnrichmentError,
    EnrichmentFailed,
    Outcome,
    ProjectCache,
)

__all__ = [
    "KNOWN_EVENTS",
    "Enriched",
    "EnrichedBatch",
    "Enricher",
    "EnrichmentError",
    "EnrichmentFailed",
    "Outcome",
    "ProjectCache",
]
