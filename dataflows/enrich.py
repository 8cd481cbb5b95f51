"""enrich: claimx.enrichment.pending → entity tables (Delta) + claimx.downloads.pending
| enrichment DLQ.

    python -m bytewax.run dataflows.enrich
"""

from __future__ import annotations

import gc
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.stages import StageOutput
from claimx_flow.stages.enrich import EnrichStage, SourcedTask
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_input, write_outputs
from operators.async_step import async_flat_map_batch
from operators.batching import batch_by_key
from operators.parse import parse_or_route

STAGE = STAGES["enrich"]
BATCH_LATENCY = timedelta(milliseconds=500)
INPUT_BATCH = 500
"""Tasks read per partition at a time. What is read together is enriched together: its API
answers, rows and download tasks are all in memory at once, so this bounds the stage's memory
(1,000 per partition took file-heavy bursts past the 512 MiB pod request)."""
GC_THRESHOLDS = (10_000, 10, 10)
"""A batch allocates tens of thousands of short-lived objects (rows, messages, API documents);
with Python's default of 700 the youngest generation was collected every few hundred of them,
walking the batch's survivors again each time. The older generations keep their defaults, so
cyclic garbage still gets freed in a long-running process."""


def build(settings: Settings) -> Dataflow:
    stage = EnrichStage.from_settings(settings)

    async def enrich_batches(batches: list[tuple[str, list[SourcedTask]]]) -> list[StageOutput]:
        return await stage.process([task for _, tasks in batches for task in tasks])

    flow = Dataflow(STAGE.app)
    pending = op.input("pending", flow, kafka_input(settings, STAGE, batch_size=INPUT_BATCH))
    tasks = parse_or_route(
        "read-task",
        pending,
        stage.parse,
        error_type=OutboundRecord,
        on_exception=stage.router.reject,
    )
    by_project = op.key_on("by-project", tasks.oks, lambda sourced: sourced[1].project_id)
    batches = batch_by_key(
        "batch", by_project, max_size=settings.enrichment_batch_size, max_latency=BATCH_LATENCY
    )
    # Each task has its own deadline; this backstop only catches a batch that is stuck.
    enriched = async_flat_map_batch(
        "enrich", batches, enrich_batches, batch_timeout_s=stage.item_deadline_s + 60
    )
    write_outputs("out", op.merge("all-out", enriched, tasks.errs), settings, STAGE)
    return flow


def collect_less_often() -> None:
    """What the imports and the set-up left alive lives as long as the process: drop their
    garbage, freeze the rest out of every later collection, then collect young objects less
    often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build, after_build=collect_less_often)
