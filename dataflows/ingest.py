"""ingest: claimx.events.raw → claimx_events (Delta) + claimx.enrichment.pending | events DLQ.

python -m bytewax.run dataflows.ingest
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.stages.ingest import Ingester
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_batches, write_batches

STAGE = STAGES["ingest"]


def build(settings: Settings) -> Dataflow:
    flow = Dataflow(STAGE.app)
    raw = op.input("raw-events", flow, kafka_batches(settings, STAGE))
    ingested = op.map("ingest", raw, Ingester.from_settings(settings).ingest)
    write_batches("out", ingested, settings, STAGE)
    return flow


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
