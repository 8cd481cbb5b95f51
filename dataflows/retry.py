"""retry: the retry tier topics → back to their pending topics, each message no earlier than
its due time.

    python -m bytewax.run dataflows.retry
"""

from __future__ import annotations

from datetime import datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.routing.tiers import all_tiers, release_time
from claimx_flow.runtime.observers import StageObserver
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_output
from operators.due_time import DueTimeInput

STAGE = STAGES["retry"]


def build(settings: Settings) -> Dataflow:
    tiers = {tier.topic: tier for tier in all_tiers(settings)}

    def due_at(record: KafkaRecord) -> datetime:
        return release_time(record, tiers[record.topic])

    def back_to_pending(record: KafkaRecord) -> OutboundRecord:
        """The message as it was, failure headers included, so its attempts keep counting."""
        return OutboundRecord(
            tiers[record.topic].pending_topic, record.key, record.value, record.headers
        )

    due = DueTimeInput(
        client_config(settings),
        settings.consumer_group(STAGE.consumer),
        tiers,
        due_at,
        stop_at_end=settings.claimx_stop_at_end,
        observer=StageObserver(),
    )
    flow = Dataflow(STAGE.app)
    released = op.input("due", flow, due)
    op.output(
        "pending", op.map("back-to-pending", released, back_to_pending), kafka_output(settings)
    )
    return flow


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
