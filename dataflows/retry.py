"""retry: the retry tier topics → back to their pending topics, each message no earlier than
its due time.

    python -m bytewax.run dataflows.retry
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.config import load_settings
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.routing.tiers import all_tiers
from operators.due_time import RetryTierInput
from operators.kafka import CheckedKafkaOutput
from operators.runtime import setup_process

settings = load_settings()
setup_process("retry", settings)
tiers = {tier.topic: tier for tier in all_tiers(settings)}


def back_to_pending(record: KafkaRecord) -> OutboundRecord:
    """The message as it was, failure headers included, so its attempts keep counting."""
    return OutboundRecord(
        tiers[record.topic].pending_topic, record.key, record.value, record.headers
    )


flow = Dataflow("claimx-retry")
due = op.input("due", flow, RetryTierInput(settings, tiers.values()))
op.output("pending", op.map("back-to-pending", due, back_to_pending), CheckedKafkaOutput(settings))
