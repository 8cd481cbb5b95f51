"""Enrich: enrichment tasks → entity rows + download tasks, or classified failures.

The dataflow hands over each poll of a partition whole (``enrich``): its tasks are enriched
together, one API call per project and kind among them (tasks are keyed by project, so a
project's tasks share a partition), and the batch goes on under its partition's name, its rows
already Arrow. Several reads are enriched at once, and a partition's reads leave in the order
they were read: a later event's row must reach the table after an earlier one's. The API client
lives on the process's event loop and is created there on first use.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from claimx_flow.api import ClaimXApiClient
from claimx_flow.config import Settings
from claimx_flow.enrichment import Enriched, EnrichedBatch, Enricher, ProjectCache
from claimx_flow.enrichment.turns import Turns, never
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord, RecordBatch
from claimx_flow.models import EnrichmentTask, MessageIds
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.routing.tiers import enrichment_ladder
from claimx_flow.runtime import metrics
from claimx_flow.runtime.exit import close_at_exit
from claimx_flow.stages.outputs import RowBatch, StageBatch, StageOutput, sourced
from claimx_flow.stages.tables import gathered

SourcedTask = tuple[KafkaRecord, EnrichmentTask]

TASKS_IN_FLIGHT = 6_000
"""Tasks a process holds in its partition reads, started and not yet handed on (about: a
lane takes one more read before it waits). Against an API across a network a read spends most
of its time waiting for answers; with several reads in flight the event loop builds one read's
rows while the others wait (docs/performance.md, "Against an API across a network"). The bound
holds the memory (a read's tasks, answers and rows) and the work a crash starts again."""


TURNS_PER_CALL = 4
"""Groups of tasks enriched at once per API call the client may have in flight: enough that a
call never waits for a group to be ready (a group builds its rows, or waits for a project
another batch is fetching, between its calls), few enough that a group in its turn waits for
at most a few others' calls."""


@dataclass
class EnrichStage:
    settings: Settings
    router: FailureRouter
    make_client: Callable[[Settings], ClaimXApiClient] = ClaimXApiClient
    stopped_at: Callable[[], float | None] = never
    """When the process was asked to stop (``time.monotonic()``), or None: groups still waiting
    for a turn one deadline after the stop go back to their retry tier, so the drain ends
    within ``drain_bound_s``."""
    on_progress: Callable[[], None] | None = None
    """Told whenever a group of tasks is done (on the event loop's thread)."""
    _enricher: Enricher | None = field(default=None, init=False)
    _client: ClaimXApiClient | None = field(default=None, init=False)
    _exit_hook: Callable[[], None] | None = field(default=None, init=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        stopped_at: Callable[[], float | None] = never,
        on_progress: Callable[[], None] | None = None,
    ) -> EnrichStage:
        return cls(
            settings,
            FailureRouter.for_stage(
                settings,
                "enrich",
                settings.claimx_enrichment_dlq_topic,
                enrichment_ladder(settings),
            ),
            stopped_at=stopped_at,
            on_progress=on_progress,
        )

    @property
    def item_deadline_s(self) -> float:
        """How long one task may take from its turn: two API calls (its project's and its
        own), each with every retry the client makes. Past it the task goes to its retry
        tier."""
        per_call = self.settings.claimx_api_timeout_seconds * (
            self.settings.claimx_api_max_retries + 1
        )
        return 2 * per_call

    @property
    def drain_bound_s(self) -> float:
        """The longest a graceful stop waits for the reads in flight: no group of tasks runs
        past one task deadline after the stop (``Turns``)."""
        return self.item_deadline_s

    @property
    def turns(self) -> int:
        """Groups of tasks enriched at once, per process."""
        return TURNS_PER_CALL * self.settings.claimx_api_concurrency

    @property
    def batches_in_flight(self) -> int:
        """Partition reads enriched at once, per process: about ``TASKS_IN_FLIGHT`` tasks, and
        never fewer than two reads, so one read's rows are built while another's calls wait."""
        return max(2, TASKS_IN_FLIGHT // self.settings.enrichment_batch_size)

    def parse(self, record: KafkaRecord) -> SourcedTask | OutboundRecord:
        """The message in ``record``, or a DLQ record if it cannot be read."""
        return self.router.read(record, EnrichmentTask)

    async def enrich(self, batch: RecordBatch) -> StageBatch:
        """One partition's read: every record as its rows and download tasks, or routed."""
        tasks: list[SourcedTask] = []
        outputs: list[StageOutput] = []
        for record in batch.records:
            try:
                read = self.parse(record)
            except Exception as exc:  # whatever one record causes stops that record only
                read = self.router.reject(record, exc)
            if isinstance(read, OutboundRecord):
                outputs.append(read)
            else:
                tasks.append(read)
        if tasks:
            outputs.extend(await self.process(tasks))
        return gathered(batch.part, outputs, self.router)

    async def process(self, batch: Sequence[SourcedTask]) -> list[StageOutput]:
        enricher = await self._ready()
        metrics.batch(len(batch))
        enriched = await enricher.enrich([task for _, task in batch])
        outputs: list[StageOutput] = self._project_rows(batch, enriched)
        done: dict[str, int] = {}  # counted once per event type, not per event
        for (record, task), outcome in zip(batch, enriched.outcomes, strict=True):
            if isinstance(outcome, Enriched):
                done[task.event_type] = done.get(task.event_type, 0) + 1
                outputs.extend(sourced(outcome.rows, record))
                outputs.extend(
                    OutboundRecord(
                        self.settings.claimx_downloads_pending_topic,
                        download.kafka_key,
                        download.to_json(),
                    )
                    for download in outcome.downloads
                )
            else:
                outputs.append(
                    self.router.route(
                        record,
                        reason=outcome.message,
                        error_class=outcome.error_class,
                        category=outcome.category,
                        ids=MessageIds(task.project_id, task.event_id, task.media_id),
                        spend_attempt=outcome.spends_attempt,
                    )
                )
        for event_type, count in done.items():
            metrics.EVENTS_ENRICHED.labels(event_type=event_type).inc(count)
        return outputs

    @staticmethod
    def _project_rows(batch: Sequence[SourcedTask], enriched: EnrichedBatch) -> list[StageOutput]:
        """A batch's project rows, as the enricher converted them, each marked with the first
        message of its project: the one dead-lettered should its row be refused."""
        if not enriched.project_rows:
            return []
        first: dict[str, KafkaRecord] = {}
        for record, task in batch:
            first.setdefault(task.project_id, record)
        any_record = batch[0][0]
        sources: dict[str, list[KafkaRecord]] = {}
        for table, row in enriched.project_rows:  # in each table's order
            sources.setdefault(table, []).append(first.get(str(row.get("project_id")), any_record))
        return [
            (table, RowBatch(enriched.project_tables[table], sources[table])) for table in sources
        ]

    async def close(self) -> None:
        """Close the API client (tests and measurements; a stage process at its exit). The next
        batch opens a new one, with an empty project cache."""
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        if self._client is not None:
            await self._client.close()
        self._client = self._enricher = None

    async def _ready(self) -> Enricher:
        if self._enricher is None:
            self._client = await self.make_client(self.settings).open()
            if self._exit_hook is None:
                self._exit_hook = close_at_exit(self.close)
            turns = Turns(
                self.turns, stopped_at=self.stopped_at, closing_after_s=self.item_deadline_s
            )
            metrics.watch_task_groups(lambda: turns.held, lambda: turns.waiting)
            self._enricher = Enricher(
                self._client,
                ProjectCache(),
                deadline_s=self.item_deadline_s,
                turns=turns,
                on_progress=self.on_progress,
            )
        return self._enricher
