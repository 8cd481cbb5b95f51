"""Every Prometheus metric of the pipeline, defined once, so names and labels cannot drift.

The runbook's metric meanings, in Prometheus style (README "Operations" maps one to the other).
All live in ``prometheus_client``'s default registry, which both Bytewax's ``:3030/metrics``
and the stage's health port ``/metrics`` serve. A process runs exactly one stage, so the
``stage`` label is set once per process (:func:`set_stage`) instead of being threaded through
every call that counts something.

No ``_created`` series: importing this module turns them off for the whole process (every
process that serves these metrics imports it), so a counter is one series, not two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from claimx_flow import catalog
from claimx_flow.errors import ErrorCategory

if TYPE_CHECKING:  # the writer pulls in deltalake; metrics must stay cheap to import
    from claimx_flow.config import Settings
    from claimx_flow.delta.writer import WriteOutcome

# ``_created`` series double every counter and histogram and say nothing a restart does not:
# off before the first scrape (prometheus_client reads this flag at every exposition).
_disable_created: Any = disable_created_metrics  # untyped in prometheus_client
_disable_created()

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TRANSFER_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
BREAKER_STATES = ("closed", "half_open", "open")
API_ENDPOINTS = ("project", "media", "task_assignment", "video_collaboration")

# Throughput ---------------------------------------------------------------------------------
EVENTS_INGESTED = Counter(
    "claimx_events_ingested_total", "Raw events turned into an events row and an enrichment task."
)
EVENTS_ENRICHED = Counter(
    "claimx_events_enriched_total",
    "Enrichment tasks done (rows written, downloads started), by event type.",
    ["event_type"],
)
DOWNLOADS = Counter("claimx_downloads_total", "Media files downloaded into the cache.")
DOWNLOAD_BYTES = Counter("claimx_download_bytes_total", "Bytes downloaded into the cache.")
DOWNLOAD_SECONDS = Histogram(
    "claimx_download_duration_seconds",
    "One download attempt from its presigned URL, by outcome (ok, failed).",
    ["outcome"],
    buckets=_TRANSFER_BUCKETS,
)
DOWNLOAD_NOT_FOUND = Counter(
    "claimx_download_not_found_total",
    "Downloads the media host answered 404 or 410 (permanent: the task goes to the DLQ).",
    ["status"],
)
NOT_FOUND_STATUSES = (404, 410)
URL_REFRESHES = Counter(
    "claimx_download_url_refreshes_total", "Expired presigned URLs refreshed from the media API."
)
UPLOADS = Counter("claimx_uploads_total", "Files stored and committed (row, result, cache).")
UPLOAD_BYTES = Counter("claimx_upload_bytes_total", "Bytes stored by uploads.")
UPLOAD_SECONDS = Histogram(
    "claimx_upload_duration_seconds",
    "One file put into the store, by outcome (ok, failed).",
    ["outcome"],
    buckets=_TRANSFER_BUCKETS,
)
BATCH_SIZE = Histogram(
    "claimx_batch_size",
    "Items per batch a stage processes at once.",
    ["stage"],
    buckets=_BATCH_BUCKETS,
)

# ClaimX API ---------------------------------------------------------------------------------
API_CALLS = Counter(
    "claimx_api_calls_total",
    "Logical API calls (one call may take several HTTP attempts).",
    ["stage", "endpoint"],
)
API_SECONDS = Histogram(
    "claimx_api_request_duration_seconds",
    "One HTTP attempt to the ClaimX API, by endpoint and HTTP status ('none': no answer).",
    ["stage", "endpoint", "status"],
    buckets=_LATENCY_BUCKETS,
)
API_ERRORS = Counter(
    "claimx_api_errors_total",
    "HTTP attempts to the ClaimX API that failed, by error category.",
    ["stage", "endpoint", "category"],
)
TASK_GROUPS = Gauge(
    "claimx_enrich_task_groups",
    "Groups of enrichment tasks (a task, or one project's file events of a read) in a turn at "
    "the API or waiting for one: many waiting, an API slower than the work in flight.",
    ["state"],
)
BREAKER_STATE = Gauge(
    "claimx_api_circuit_breaker_state",
    "1 for the ClaimX API circuit breaker's current state, 0 for the others.",
    ["stage", "state"],
)

# Failures, retries, DLQs --------------------------------------------------------------------
ERRORS = Counter(
    "claimx_errors_total",
    "Messages that failed in a stage, by error category.",
    ["stage", "category"],
)
RETRY_ROUTED = Counter(
    "claimx_failures_routed_total",
    "Failed messages by stage and where they were sent (a retry tier or a DLQ).",
    ["stage", "destination"],
)
RETRIES = Counter(
    "claimx_retries_total",
    "Failed messages sent to a retry tier, by tier delay in seconds.",
    ["stage", "tier"],
)
DLQ_MESSAGES = Counter(
    "claimx_dlq_messages_total", "Messages sent to a dead-letter queue.", ["stage", "topic"]
)
DLQ_DEPTH = Gauge(
    "claimx_dlq_depth",
    "Records still in a dead-letter queue: high minus low watermark, summed over partitions "
    "(a purge or retention raises the low watermark; a replay leaves records in place).",
    ["topic"],
)
DLQ_DEPTH_POLLED = Gauge(
    "claimx_dlq_depth_last_poll_timestamp_seconds",
    "When claimx_dlq_depth was last read from Kafka (Unix time; stale when Kafka is unreachable).",
    ["topic"],
)
RELEASE_LATENESS = Histogram(
    "claimx_retry_release_lateness_seconds",
    "How long after its due time a retried message was released.",
    ["tier"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
HELD = Gauge(
    "claimx_retry_waiting_head_due_seconds",
    "Seconds until the message at the head of a tier partition is due (0 when none waits).",
    ["tier", "partition"],
)

# Kafka --------------------------------------------------------------------------------------
CONSUMER_LAG = Gauge(
    "claimx_consumer_lag_messages",
    "Messages on the broker not yet read by the stage, per topic partition.",
    ["stage", "topic", "partition"],
)
CONSUMED = Counter(
    "claimx_consumed_messages_total", "Messages read from Kafka.", ["stage", "topic", "partition"]
)
OFFSET_SNAPSHOTS = Counter(
    "claimx_offset_snapshots_total",
    "Partition offsets snapshotted into recovery (Bytewax's commits: offsets live only there).",
    ["stage", "topic"],
)

# Delta --------------------------------------------------------------------------------------
DELTA_SECONDS = Histogram(
    "claimx_delta_write_duration_seconds",
    "One MERGE into a Delta table.",
    ["table"],
    buckets=_TRANSFER_BUCKETS,
)
DELTA_ROWS = Counter(
    "claimx_delta_rows_total",
    "Rows a keyed write changed in a Delta table, by action (inserted, updated).",
    ["table", "action"],
)
DELTA_SOURCE_ROWS = Counter(
    "claimx_delta_source_rows_total",
    "Rows given to a keyed write into a Delta table (inserted + updated + unchanged duplicates).",
    ["table"],
)

# Results ------------------------------------------------------------------------------------
RESULTS = Counter(
    "claimx_results_files_total", "Distinct media files by final upload status.", ["status"]
)
RESULT_BYTES = Counter("claimx_results_bytes_total", "Bytes of distinct uploaded files.")
PROJECTS_WITH_FILES = Gauge("claimx_results_projects", "Projects with at least one result.")

# The process --------------------------------------------------------------------------------
STAGE_INFO = Gauge("claimx_stage_info", "1, labelled with the stage this process runs.", ["stage"])
HEALTH_CHECK = Gauge(
    "claimx_health_check_ok",
    "1 while the stage's active readiness check passes (kafka, api, storage), else 0.",
    ["stage", "check"],
)

_stage = "none"


def set_stage(stage: str) -> None:
    """Name the process's stage and publish zeros for the series it will count.

    Zeros matter: ``rate()`` of a counter that appears only with its first increment misses
    what happened before the first scrape, and a ratio needs both sides to exist.
    """
    global _stage
    _stage = stage
    STAGE_INFO.labels(stage=stage).set(1)
    for category in ErrorCategory:
        ERRORS.labels(stage=stage, category=category.value)
    if catalog.stage(stage).calls_api:
        for endpoint in API_ENDPOINTS:
            API_CALLS.labels(stage=stage, endpoint=endpoint)
    if stage == "download":
        for status in NOT_FOUND_STATUSES:
            DOWNLOAD_NOT_FOUND.labels(status=str(status))
    if stage == "enrich":
        from claimx_flow.enrichment.handlers import KNOWN_EVENTS

        for event_type in sorted(KNOWN_EVENTS):
            EVENTS_ENRICHED.labels(event_type=event_type)


def stage() -> str:
    """The stage label of this process (``none`` outside a stage process, e.g. in tests)."""
    return _stage


@dataclass
class Attempt:
    """What an HTTP attempt learnt; ``status`` stays None when no answer came."""

    status: int | None = None


@contextmanager
def api_attempt(endpoint: str) -> Iterator[Attempt]:
    """Time one HTTP attempt to the API and label it with the status it got."""
    attempt = Attempt()
    started = time.perf_counter()
    try:
        yield attempt
    finally:
        status = str(attempt.status) if attempt.status is not None else "none"
        API_SECONDS.labels(stage=_stage, endpoint=endpoint, status=status).observe(
            time.perf_counter() - started
        )


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe how long the block took into ``histogram``, labelled ``outcome`` ok or failed."""
    started, outcome = time.perf_counter(), "failed"
    try:
        yield
        outcome = "ok"
    finally:
        histogram.labels(outcome=outcome).observe(time.perf_counter() - started)


def api_call(endpoint: str) -> None:
    API_CALLS.labels(stage=_stage, endpoint=endpoint).inc()


def api_error(endpoint: str, category: ErrorCategory) -> None:
    API_ERRORS.labels(stage=_stage, endpoint=endpoint, category=category.value).inc()


def watch_task_groups(in_turn: Callable[[], int], waiting: Callable[[], int]) -> None:
    """Read the enricher's turns at every scrape (``len`` and a subtraction: safe from the
    scrape's thread)."""
    TASK_GROUPS.labels(state="in_turn").set_function(in_turn)
    TASK_GROUPS.labels(state="waiting").set_function(waiting)


def breaker_state(state: str) -> None:
    """Make ``state`` the breaker's one current state."""
    for name in BREAKER_STATES:
        BREAKER_STATE.labels(stage=_stage, state=name).set(1 if name == state else 0)


def failure(stage: str, category: ErrorCategory, retry_delay_s: int | None, topic: str) -> None:
    """A failed message and where it went: a retry tier (with its delay) or a DLQ topic."""
    ERRORS.labels(stage=stage, category=category.value).inc()
    RETRY_ROUTED.labels(stage=stage, destination=topic).inc()
    if retry_delay_s is None:
        DLQ_MESSAGES.labels(stage=stage, topic=topic).inc()
    else:
        RETRIES.labels(stage=stage, tier=str(retry_delay_s)).inc()


def download_not_found(status: int) -> None:
    """The media host answered 404 or 410 for a download (the runbook's ``404_errors``)."""
    DOWNLOAD_NOT_FOUND.labels(status=str(status)).inc()


def batch(size: int) -> None:
    BATCH_SIZE.labels(stage=_stage).observe(size)


def delta_written(outcome: WriteOutcome) -> None:
    """One Delta write (the hook of the Delta sinks)."""
    if not outcome.source_rows:
        return
    DELTA_SECONDS.labels(table=outcome.table).observe(outcome.seconds)
    DELTA_SOURCE_ROWS.labels(table=outcome.table).inc(outcome.source_rows)
    DELTA_ROWS.labels(table=outcome.table, action="inserted").inc(outcome.inserted)
    DELTA_ROWS.labels(table=outcome.table, action="updated").inc(outcome.updated)


# DLQ depth ----------------------------------------------------------------------------------
DepthRead = Callable[[], dict[str, int]]
"""Reads the depth of each DLQ watched (a topic that does not exist is left out)."""


class DlqDepthWatcher:
    """Sets ``claimx_dlq_depth`` from Kafka every ``every_s`` on a daemon thread of its own,
    never on the dataflow's path. A read that fails keeps the last values (their poll
    timestamp then ages) and is logged once per outage."""

    def __init__(self, topics: list[str], read: DepthRead, every_s: float) -> None:
        self.topics = topics
        self.read = read
        self.every_s = every_s
        self.stopped = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="claimx-dlq-depth", daemon=True)

    def start(self) -> DlqDepthWatcher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopped.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self.poll()
            if self.stopped.wait(self.every_s):
                return

    def poll(self) -> None:
        try:
            depths = self.read()
        except Exception as exc:  # Kafka away: the next poll tries again
            if not self._failing:
                log.warning("cannot read the depth of %s: %s", ", ".join(self.topics), exc)
            self._failing = True
            return
        if self._failing:
            log.info("reading the depth of %s again", ", ".join(self.topics))
        self._failing = False
        now = time.time()
        for topic, depth in depths.items():
            DLQ_DEPTH.labels(topic=topic).set(depth)
            DLQ_DEPTH_POLLED.labels(topic=topic).set(now)


def watch_dlq_depth(stage: str, settings: Settings) -> DlqDepthWatcher | None:
    """Export the depth of the DLQ ``stage`` writes (none for results and retry), every
    ``CLAIMX_DLQ_DEPTH_INTERVAL_SECONDS`` (0: not at all), through one Kafka admin client."""
    from claimx_flow.kafka.lag import DlqDepthReader, dlq_topics

    topics = dlq_topics(settings, [stage])
    every_s = settings.claimx_dlq_depth_interval_seconds
    if not topics or every_s <= 0:
        return None
    return DlqDepthWatcher(topics, DlqDepthReader(settings, topics).read, every_s).start()
