"""enrich: claimx.enrichment.pending → entity tables (Delta) + claimx.downloads.pending
| enrichment DLQ.

    python -m bytewax.run dataflows.enrich

Each partition read starts as soon as it arrives, beside the reads still waiting for their API
answers, and leaves when it and every earlier read of its partition are done; reads in flight
when an epoch ends are in the step's recovery state and start again on resume
(``operators/overlapped.py``). Their groups of tasks take turns at the API, and a stop gives no
turn past one deadline (``claimx_flow/enrichment/turns.py``).
"""

from __future__ import annotations

import gc
from dataclasses import replace

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.records import RecordBatch
from claimx_flow.routing.ledger import RoutedLedger
from claimx_flow.runtime.health import heartbeat
from claimx_flow.stages import StageBatch
from claimx_flow.stages.enrich import EnrichStage
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_batches, write_batches
from operators import shutdown
from operators.overlapped import Heartbeat, overlapped_flat_map

STAGE = STAGES["enrich"]
GC_THRESHOLDS = (10_000, 10, 10)
"""A batch allocates tens of thousands of short-lived objects (rows, messages, API documents);
with Python's default of 700 the youngest generation was collected every few hundred of them,
walking the batch's survivors again each time. The older generations keep their defaults, so
cyclic garbage still gets freed in a long-running process."""


def build(settings: Settings) -> Dataflow:
    progress = Heartbeat()
    stage = EnrichStage.from_settings(
        settings, stopped_at=shutdown.requested_at, on_progress=progress.beat
    )
    ledger = RoutedLedger.for_stage(settings, STAGE)

    async def enrich(read: RecordBatch) -> list[StageBatch]:
        return [await stage.enrich(not_routed(ledger, read))]

    flow = Dataflow(STAGE.app)
    pending = op.input(
        "pending",
        flow,
        kafka_batches(settings, STAGE, batch_size=settings.enrichment_batch_size, ledger=ledger),
    )
    enriched = overlapped_flat_map(
        "enrich",
        pending,
        enrich,
        max_in_flight=stage.batches_in_flight,
        lane_of=partition_of,
        ordered=True,
        # Each group of tasks ends within its deadline from its turn, and beats as it does: a
        # read waiting its turns is not stalled, a loop that stopped answering is.
        heartbeat=progress,
        stall_timeout_s=stage.item_deadline_s + 60,
        # A full step waits for room as long as the API needs; while groups finish, the worker
        # is alive though it polls no source.
        while_waiting=heartbeat,
    )
    write_batches("out", enriched, settings, STAGE)
    return flow


def not_routed(ledger: RoutedLedger | None, read: RecordBatch) -> RecordBatch:
    """``read`` without the tasks an earlier run routed: a read in flight at the snapshot comes
    back from the step's recovery state, not from the input, which reads the others past."""
    if ledger is None:
        return read
    kept = [record for record in read.records if not ledger.sent(record)]
    return read if len(kept) == len(read.records) else replace(read, records=kept)


def partition_of(read: RecordBatch) -> str:
    """A partition's reads share a lane, so they leave in the order they were read."""
    return read.part


def collect_less_often() -> None:
    """What the imports and the set-up left alive lives as long as the process: drop their
    garbage, freeze the rest out of every later collection, then collect young objects less
    often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build, after_build=collect_less_often)
