"""enrich: claimx.enrichment.pending → entity tables (Delta) + claimx.downloads.pending
| enrichment DLQ.

    python -m bytewax.run dataflows.enrich
"""

from __future__ import annotations

import asyncio
import gc

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.records import RecordBatch
from claimx_flow.stages import StageBatch
from claimx_flow.stages.enrich import EnrichStage
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_batches, write_batches
from operators.async_step import async_flat_map_batch

STAGE = STAGES["enrich"]
GC_THRESHOLDS = (10_000, 10, 10)
"""A batch allocates tens of thousands of short-lived objects (rows, messages, API documents);
with Python's default of 700 the youngest generation was collected every few hundred of them,
walking the batch's survivors again each time. The older generations keep their defaults, so
cyclic garbage still gets freed in a long-running process."""


def build(settings: Settings) -> Dataflow:
    stage = EnrichStage.from_settings(settings)

    async def enrich(reads: list[RecordBatch]) -> list[StageBatch]:
        return list(await asyncio.gather(*(stage.enrich(read) for read in reads)))

    flow = Dataflow(STAGE.app)
    pending = op.input(
        "pending", flow, kafka_batches(settings, STAGE, batch_size=settings.enrichment_batch_size)
    )
    # Each task has its own deadline; this backstop only catches a batch that is stuck.
    enriched = async_flat_map_batch(
        "enrich", pending, enrich, batch_timeout_s=stage.item_deadline_s + 60
    )
    write_batches("out", enriched, settings, STAGE)
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
