"""download: claimx.downloads.pending → files in CACHE_DIR + claimx.downloads.cached
| download DLQ.

    python -m bytewax.run dataflows.download
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.config import load_settings
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.stages import StageOutput
from claimx_flow.stages.download import DownloadStage, SourcedDownload
from operators.async_step import async_flat_map_batch
from operators.kafka import KafkaInput
from operators.outputs import write_outputs
from operators.runtime import setup_process

settings = load_settings()
setup_process("download", settings)
stage = DownloadStage.from_settings(settings)


def readable(item: SourcedDownload | OutboundRecord) -> SourcedDownload | None:
    return None if isinstance(item, OutboundRecord) else item


def unreadable(item: SourcedDownload | OutboundRecord) -> StageOutput | None:
    return item if isinstance(item, OutboundRecord) else None


flow = Dataflow("claimx-download")
pending = op.input(
    "pending",
    flow,
    KafkaInput(
        settings,
        "downloader",
        [settings.claimx_downloads_pending_topic],
        batch_size=settings.download_batch_size,
    ),
)
read = op.map("read-task", pending, stage.parse)
tasks = op.redistribute("spread", op.filter_map("readable", read, readable))
downloaded = async_flat_map_batch(
    "download",
    tasks,
    stage.process,
    batch_timeout_s=settings.download_timeout_seconds * 4,
)
write_outputs(
    "out",
    op.merge("all-out", downloaded, op.filter_map("unreadable", read, unreadable)),
    settings,
    [],
)
