"""enrich: claimx.enrichment.pending → entity tables (Delta) + claimx.downloads.pending
| enrichment DLQ.

    python -m bytewax.run dataflows.enrich
"""

from __future__ import annotations

import gc
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.config import load_settings
from claimx_flow.delta.tables import (
    CONTACTS,
    EXTERNAL_LINKS,
    MEDIA,
    PROJECTS,
    TASK_TEMPLATES,
    TASKS,
    VIDEO_COLLAB,
)
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.stages import StageOutput
from claimx_flow.stages.enrich import EnrichStage, SourcedTask
from operators.async_step import async_flat_map_batch
from operators.batching import batch_by_key
from operators.kafka import KafkaInput
from operators.outputs import write_outputs
from operators.runtime import setup_process

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

settings = load_settings()
setup_process("enrich", settings)
stage = EnrichStage.from_settings(settings)
# What the imports and the set-up left alive lives as long as the process: drop their garbage,
# freeze the rest out of every later collection, then collect young objects less often.
gc.collect()
gc.freeze()
gc.set_threshold(*GC_THRESHOLDS)


def readable(item: SourcedTask | OutboundRecord) -> SourcedTask | None:
    return None if isinstance(item, OutboundRecord) else item


def unreadable(item: SourcedTask | OutboundRecord) -> StageOutput | None:
    return item if isinstance(item, OutboundRecord) else None


async def enrich_batches(batches: list[tuple[str, list[SourcedTask]]]) -> list[StageOutput]:
    return await stage.process([task for _, tasks in batches for task in tasks])


flow = Dataflow("claimx-enrich")
pending = op.input(
    "pending",
    flow,
    KafkaInput(
        settings,
        "enricher",
        [settings.claimx_enrichment_pending_topic],
        batch_size=INPUT_BATCH,
    ),
)
read = op.map("read-task", pending, stage.parse)
tasks = op.filter_map("readable", read, readable)
by_project = op.key_on("by-project", tasks, lambda sourced: sourced[1].project_id)
batches = batch_by_key(
    "batch", by_project, max_size=settings.enrichment_batch_size, max_latency=BATCH_LATENCY
)
enriched = async_flat_map_batch(
    "enrich", batches, enrich_batches, batch_timeout_s=settings.claimx_api_timeout_seconds * 10
)
write_outputs(
    "out",
    op.merge("all-out", enriched, op.filter_map("unreadable", read, unreadable)),
    settings,
    [PROJECTS, CONTACTS, MEDIA, TASKS, TASK_TEMPLATES, EXTERNAL_LINKS, VIDEO_COLLAB],
)
