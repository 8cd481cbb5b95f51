"""ingest: claimx.events.raw → claimx_events (Delta) + claimx.enrichment.pending | events DLQ.

python -m bytewax.run dataflows.ingest
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.config import load_settings
from claimx_flow.delta.tables import EVENTS
from claimx_flow.stages.ingest import Ingester
from operators.kafka import KafkaInput
from operators.outputs import write_outputs
from operators.runtime import setup_process

settings = load_settings()
setup_process("ingest", settings)

flow = Dataflow("claimx-ingest")
raw = op.input("raw-events", flow, KafkaInput(settings, "ingester", [settings.claimx_events_topic]))
spread = op.redistribute("spread", raw)
outputs = op.flat_map_batch("ingest", spread, Ingester.from_settings(settings).ingest_batch)
write_outputs("out", outputs, settings, [EVENTS])
