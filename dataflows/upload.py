"""upload: claimx.downloads.cached → stored file → claimx_attachments (Delta)
→ claimx.downloads.results → cache released | download DLQ.

    python -m bytewax.run dataflows.upload
"""

from __future__ import annotations

from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from claimx_flow.config import load_settings
from claimx_flow.delta.tables import ATTACHMENTS
from claimx_flow.delta.writer import writer_for
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.stages import StageOutput
from claimx_flow.stages.upload import SourcedCached, UploadCompletion, UploadOutput, UploadStage
from operators.async_step import async_flat_map_batch
from operators.kafka import KafkaInput
from operators.outputs import write_outputs
from operators.runtime import setup_process
from operators.upload_commit import UploadCommitSink

settings = load_settings()
setup_process("upload", settings)
stage = UploadStage.from_settings(settings)


def readable(item: SourcedCached | OutboundRecord) -> SourcedCached | None:
    return None if isinstance(item, OutboundRecord) else item


def unreadable(item: SourcedCached | OutboundRecord) -> StageOutput | None:
    return item if isinstance(item, OutboundRecord) else None


def failed(item: UploadOutput) -> StageOutput | None:
    return item if isinstance(item, OutboundRecord) else None


def completion(item: UploadOutput) -> tuple[str, UploadCompletion] | None:
    return (ATTACHMENTS.name, item) if isinstance(item, UploadCompletion) else None


flow = Dataflow("claimx-upload")
cached = op.input(
    "cached",
    flow,
    KafkaInput(
        settings,
        "uploader",
        [settings.claimx_downloads_cached_topic],
        batch_size=settings.upload_batch_size,
    ),
)
read = op.map("read", cached, stage.parse)
items = op.redistribute("spread", op.filter_map("readable", read, readable))
uploaded = async_flat_map_batch("upload", items, stage.process, batch_timeout_s=600)
writer = partial(writer_for, settings, ATTACHMENTS) if settings.enable_delta_writes else None
op.output(
    "commit", op.filter_map("completed", uploaded, completion), UploadCommitSink(settings, writer)
)
upload_failures: Stream[StageOutput] = op.filter_map("upload-failed", uploaded, failed)
read_failures: Stream[StageOutput] = op.filter_map("unreadable", read, unreadable)
failures = op.merge("failures", upload_failures, read_failures)
write_outputs("out", failures, settings, [])
