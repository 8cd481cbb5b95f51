"""retry: the retry tier topics → back to their pending topics, each message no earlier than
its due time, and once: a released message names where it was read (``claimx.read_at``), and a
start after a crash reads past what the crashed run released (``claimx_flow/routing/ledger.py``).
The tiers are the configured ones plus any orphan tier found at start (a tier topic the
configuration no longer names that still holds messages), so renaming or removing a tier
strands nothing. A message the Kafka client cannot read (corrupt, not decompressible) has
nothing to send back: it goes to the DLQ of the stage its pending topic feeds, with the reason
and its tier, partition and offset in the failure headers.

    python -m bytewax.run dataflows.retry
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow import catalog
from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.clients import client_config, producer_config
from claimx_flow.kafka.records import UNREADABLE_HEADERS, Headers, KafkaRecord, OutboundRecord
from claimx_flow.routing.failures import READ_AT_HEADER, FailureRouter, read_at
from claimx_flow.routing.ledger import RoutedLedger
from claimx_flow.routing.tiers import Tier, all_tiers, orphan_tiers, release_time
from claimx_flow.runtime import health
from claimx_flow.runtime.observers import StageObserver
from dataflows._process import flow_attribute
from operators.due_time import DueTimeInput
from operators.kafka import checked_records_output

STAGE = STAGES["retry"]

log = logging.getLogger(__name__)


def build(settings: Settings) -> Dataflow:
    tiers = {tier.topic: tier for tier in [*all_tiers(settings), *_orphans(settings)]}
    dead_letters = _dead_letters(settings, tiers.values())

    def due_at(record: KafkaRecord) -> datetime:
        return release_time(record, tiers[record.topic])

    def back_to_pending(record: KafkaRecord) -> OutboundRecord:
        """The message as it was, failure headers included, so its attempts keep counting.

        One whose headers the client could not read (``UNREADABLE_HEADERS``) goes back with
        its value and none: its next failure starts its count again, which is logged here.
        One the client could not read at all has no value: it goes to its DLQ."""
        if record.error is not None:
            if record.error != UNREADABLE_HEADERS:
                routed = dead_letters[record.topic].unreadable(record)
                log.warning("%s: to %s: %s", record.position, routed.topic, record.error)
                return routed
            log.warning("%s: released without headers: %s", record.position, record.error)
        return OutboundRecord(
            tiers[record.topic].pending_topic, record.key, record.value, released_headers(record)
        )

    due = DueTimeInput(
        client_config(settings),
        settings.consumer_group(STAGE.consumer),
        tiers,
        due_at,
        stop_at_end=settings.claimx_stop_at_end,
        observer=StageObserver(),
        sent_before=RoutedLedger(
            client_config(settings),
            settings.consumer_group(STAGE.consumer),
            list(tiers),
            [catalog.topic_name(settings, topic) for topic in STAGE.writes],
        ),
    )
    flow = Dataflow(STAGE.app)
    # "tiers": one source partition per tier topic (its state is a position per Kafka
    # partition). Snapshots of the earlier per-partition input ("due") are not read; a stage
    # upgraded from it resumes from its consumer group.
    released = op.input("tiers", flow, due)
    pending = op.map("back-to-pending", released, back_to_pending)
    checked_records_output(
        "pending", pending, producer_config(settings), on_waiting=health.waited_on_kafka
    )
    return flow


def released_headers(record: KafkaRecord) -> Headers:
    """The message's headers, naming where this stage read it (as a routed copy does): a
    start after a crash reads past what the crashed run released (``routing.ledger``)."""
    kept = [(name, value) for name, value in record.headers if name != READ_AT_HEADER]
    return [*kept, (READ_AT_HEADER, read_at(record))]


def _dead_letters(settings: Settings, tiers: Iterable[Tier]) -> dict[str, FailureRouter]:
    """Per tier topic, the router to the DLQ of the stage that reads its pending topic (the
    enrichment DLQ for the enrichment tiers, the download DLQ for the download tiers): where
    that stage's own failures of the same messages end."""
    dlq_of = {
        catalog.topic_name(settings, read): catalog.topic_name(settings, spec.dlq)
        for spec in STAGES.values()
        if spec.dlq is not None
        for read in spec.reads
    }
    routers = {
        dlq: FailureRouter.for_stage(settings, STAGE.name, dlq) for dlq in set(dlq_of.values())
    }
    return {tier.topic: routers[dlq_of[tier.pending_topic]] for tier in tiers}


def _orphans(settings: Settings) -> list[Tier]:
    """Orphan tiers to drain as well; their recovery offsets keep a restart from releasing
    anything twice."""
    found = orphan_tiers(settings)
    for orphan in found:
        tier = orphan.tier
        log.warning(
            "draining orphan tier %s (%d messages, %ds delay) to %s",
            tier.topic,
            orphan.messages,
            tier.delay_s,
            tier.pending_topic,
        )
    return [orphan.tier for orphan in found]


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
