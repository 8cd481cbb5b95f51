"""The pipeline's stages, defined once.

Every place that needs to know the stages (the dataflows, health ports, preflight checks, lag,
metrics, the failure model, the local process runner, the Kubernetes manifests, waxctl values
and the alert rules) reads them from here, so a stage, a port or a topic cannot drift between
copies. Topic names come from the settings (the runbook lets each be renamed), so a stage names
the *settings* of its topics, and the functions below turn them into names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from claimx_flow.config import Settings

StageName = Literal["ingest", "enrich", "download", "upload", "results", "retry"]
"""The stages in pipeline order (the one list; :data:`STAGES` describes each)."""

Topic = Literal[
    "events",
    "events_dlq",
    "enrichment_pending",
    "enrichment_dlq",
    "downloads_pending",
    "downloads_cached",
    "downloads_results",
    "downloads_dlq",
]
"""A pipeline topic by role; ``CLAIMX_<ROLE>_TOPIC`` names it."""

Ladder = Literal["enrichment", "download"]
"""A retry ladder: the tiers in front of the enrichment or the download pending topic."""


@dataclass(frozen=True)
class StageSpec:
    """What one stage is: where it listens, what it reads and writes, what it depends on."""

    name: StageName
    port: int
    """The runbook's health port (results and retry, which it does not name: the next two)."""
    consumer: str
    """The consumer group suffix, ``<prefix>-<consumer>`` (the runbook's worker names)."""
    reads: tuple[Topic, ...] = ()
    writes: tuple[Topic, ...] = ()
    dlq: Topic | None = None
    ladder: Ladder | None = None
    """The retry tiers its failures climb."""
    outcome: Topic | None = None
    """Where a message that succeeds goes, whole, as one message naming where it was read (the
    download's cached message): a restart reads past a message already there, as it does one
    already routed (``routing.ledger``)."""
    releases: tuple[Ladder, ...] = ()
    """The retry tiers it reads and releases (the retry stage)."""
    tables: tuple[str, ...] = ()
    """The Delta tables it writes."""
    calls_api: bool = False
    uses_cache: bool = False
    """Reads or writes the shared download cache (``CACHE_DIR``)."""
    stores_files: bool = False
    """Writes media files to the file store (OneLake or the local files directory)."""
    processes: int = 1
    """Processes in the Kubernetes deployment: the low end of the runbook's replica range,
    within the default six partitions per topic."""

    @property
    def module(self) -> str:
        """The dataflow module: ``python -m bytewax.run dataflows.<stage>``."""
        return f"dataflows.{self.name}"

    @property
    def worker(self) -> str:
        """The runbook's worker name (``claimx-enricher``): ``python -m kafka_pipeline
        --worker``, and the ``app`` label of its pods, which the runbook's kubectl commands
        select on."""
        return f"claimx-{self.consumer}"

    @property
    def app(self) -> str:
        """The name of its Kubernetes objects and Bytewax dataflow."""
        return f"claimx-{self.name}"


STAGES: dict[StageName, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec(
            "ingest",
            8084,
            "ingester",
            reads=("events",),
            writes=("enrichment_pending",),
            dlq="events_dlq",
            tables=("claimx_events",),
            processes=2,
        ),
        StageSpec(
            "enrich",
            8081,
            "enricher",
            reads=("enrichment_pending",),
            writes=("downloads_pending",),
            dlq="enrichment_dlq",
            ladder="enrichment",
            tables=(
                "claimx_projects",
                "claimx_contacts",
                "claimx_media",
                "claimx_tasks",
                "claimx_task_templates",
                "claimx_external_links",
                "claimx_video_collab",
            ),
            calls_api=True,
            processes=3,
        ),
        StageSpec(
            "download",
            8082,
            "downloader",
            reads=("downloads_pending",),
            writes=("downloads_cached",),
            dlq="downloads_dlq",
            ladder="download",
            outcome="downloads_cached",
            calls_api=True,
            uses_cache=True,
            processes=5,
        ),
        StageSpec(
            "upload",
            8083,
            "uploader",
            reads=("downloads_cached",),
            writes=("downloads_results",),
            dlq="downloads_dlq",
            ladder="download",
            tables=("claimx_attachments",),
            uses_cache=True,
            stores_files=True,
            processes=5,
        ),
        StageSpec("results", 8085, "result-processor", reads=("downloads_results",)),
        StageSpec(
            "retry",
            8086,
            "retry",
            # The DLQs take what the Kafka client cannot read in a tier (dataflows/retry.py).
            writes=("enrichment_pending", "downloads_pending", "enrichment_dlq", "downloads_dlq"),
            releases=("enrichment", "download"),
        ),
    )
}
STAGE_NAMES: tuple[StageName, ...] = get_args(StageName)
if tuple(STAGES) != STAGE_NAMES:  # pragma: no cover - a typo here must not reach a process
    raise AssertionError(f"catalog out of order: {tuple(STAGES)} != {STAGE_NAMES}")


def stage(name: str) -> StageSpec:
    """The stage called ``name``, or a ``KeyError`` naming the known ones."""
    try:
        return STAGES[name]  # type: ignore[index]
    except KeyError:
        raise KeyError(f"unknown stage {name!r} (one of {', '.join(STAGE_NAMES)})") from None


def topic_name(settings: Settings, topic: Topic) -> str:
    name = getattr(settings, f"claimx_{topic}_topic")
    assert isinstance(name, str)
    return name


def ladder_topics(settings: Settings, ladder: Ladder) -> list[str]:
    """The tier topics of a ladder, in delay order."""
    if ladder == "enrichment":
        return list(settings.enrichment_retry_topics)
    return list(settings.download_retry_topics)


def input_topics(settings: Settings, spec: StageSpec) -> list[str]:
    """The topics the stage consumes (the retry stage: every tier it releases)."""
    return [topic_name(settings, t) for t in spec.reads] + [
        topic for ladder in spec.releases for topic in ladder_topics(settings, ladder)
    ]


def stage_topics(settings: Settings, spec: StageSpec) -> list[str]:
    """Every topic the stage reads or writes, its DLQ and the tiers its failures go to."""
    named = [*spec.reads, *spec.writes, *([spec.dlq] if spec.dlq else [])]
    tiers = [spec.ladder] if spec.ladder else []
    topics = [topic_name(settings, t) for t in named]
    topics += [t for ladder in (*tiers, *spec.releases) for t in ladder_topics(settings, ladder)]
    return list(dict.fromkeys(topics))
