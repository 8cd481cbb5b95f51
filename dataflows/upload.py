"""upload: claimx.downloads.cached → stored file → claimx_attachments (Delta)
→ claimx.downloads.results → cache released | download DLQ.

    python -m bytewax.run dataflows.upload
"""

from __future__ import annotations

from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.delta.tables import ATTACHMENTS
from claimx_flow.delta.writer import writer_for
from claimx_flow.kafka.clients import producer_config
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.runtime import health
from claimx_flow.runtime.health import heartbeat
from claimx_flow.stages import StageOutput
from claimx_flow.stages.upload import UploadCommitter, UploadCompletion, UploadOutput, UploadStage
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_input, write_outputs
from operators.async_step import async_flat_map_batch
from operators.commit_sink import CommitSink
from operators.kafka import CheckedProducer
from operators.parse import parse_or_route

STAGE = STAGES["upload"]


def failed(item: UploadOutput) -> StageOutput | None:
    return item if isinstance(item, OutboundRecord) else None


def completion(item: UploadOutput) -> tuple[str, UploadCompletion] | None:
    return (ATTACHMENTS.name, item) if isinstance(item, UploadCompletion) else None


def committer(settings: Settings) -> UploadCommitter:
    """Row, result and cache release, in order, by the one committer of the attachments."""
    enabled = settings.enable_delta_writes
    writer = writer_for(settings, ATTACHMENTS, patient=True) if enabled else None
    return UploadCommitter(
        writer, CheckedProducer(producer_config(settings), "upload results", health.waited_on_kafka)
    )


def build(settings: Settings) -> Dataflow:
    stage = UploadStage.from_settings(settings)
    flow = Dataflow(STAGE.app)
    cached = op.input(
        "cached", flow, kafka_input(settings, STAGE, batch_size=settings.upload_batch_size)
    )
    items = parse_or_route(
        "read", cached, stage.parse, error_type=OutboundRecord, on_exception=stage.router.reject
    )
    uploaded = async_flat_map_batch(
        "upload",
        op.redistribute("spread", items.oks),
        stage.process,
        # Each upload keeps its own deadline; this only catches a loop that stopped answering.
        batch_timeout_s=stage.batch_backstop_s,
        # A batch of uploads timing out one by one outlasts the liveness probe's patience;
        # the worker is not stuck while the backstop holds.
        while_waiting=heartbeat,
    )
    commits = CommitSink({ATTACHMENTS.name: partial(committer, settings)})
    op.output("commit", op.filter_map("completed", uploaded, completion), commits)
    upload_failures: Stream[StageOutput] = op.filter_map("upload-failed", uploaded, failed)
    write_outputs("out", op.merge("failures", upload_failures, items.errs), settings, STAGE, ())
    return flow


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
