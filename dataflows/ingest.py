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
from dataflows._wiring import kafka_input, write_outputs

STAGE = STAGES["ingest"]


def build(settings: Settings) -> Dataflow:
    flow = Dataflow(STAGE.app)
    raw = op.input("raw-events", flow, kafka_input(settings, STAGE))
    spread = op.redistribute("spread", raw)
    outputs = op.flat_map_batch("ingest", spread, Ingester.from_settings(settings).ingest_batch)
    write_outputs("out", outputs, settings, STAGE)
    return flow


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
