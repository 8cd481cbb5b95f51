"""download: claimx.downloads.pending → files in CACHE_DIR + claimx.downloads.cached
| download DLQ.

    python -m bytewax.run dataflows.download

Each task starts as soon as a download slot is free, whatever batch it was read in, and its
outputs leave as soon as it is done; tasks still in flight when an epoch ends are in the step's
recovery state and start again on resume (``operators/overlapped.py``), unless an earlier run
already routed or downloaded them (``routing/ledger.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.records import OutboundRecord
from claimx_flow.routing.ledger import RoutedLedger
from claimx_flow.runtime.health import heartbeat
from claimx_flow.stages import StageOutput
from claimx_flow.stages.download import DownloadStage, SourcedDownload
from dataflows._process import flow_attribute
from dataflows._wiring import kafka_input, write_outputs
from operators.overlapped import overlapped_flat_map
from operators.parse import parse_or_route

STAGE = STAGES["download"]


async def unless_routed(
    ledger: RoutedLedger | None,
    download: Callable[[SourcedDownload], Awaitable[list[StageOutput]]],
    item: SourcedDownload,
) -> list[StageOutput]:
    """``download``, but nothing for a task in flight at the snapshot that an earlier run went
    on to route or download (the input reads past the others)."""
    if ledger is not None and ledger.sent(item[0]):
        return []
    return await download(item)


def build(settings: Settings) -> Dataflow:
    stage = DownloadStage.from_settings(settings)
    ledger = RoutedLedger.for_stage(settings, STAGE)
    flow = Dataflow(STAGE.app)
    pending = op.input(
        "pending",
        flow,
        kafka_input(settings, STAGE, batch_size=settings.download_batch_size, ledger=ledger),
    )
    tasks = parse_or_route(
        "read-task",
        pending,
        stage.parse,
        error_type=OutboundRecord,
        on_exception=stage.router.reject,
    )
    downloaded = overlapped_flat_map(
        "download",
        tasks.oks,
        partial(unless_routed, ledger, stage.download),
        max_in_flight=stage.max_in_flight,
        # Woken for more before the batch queued behind the slots runs out.
        refill_at_most=settings.download_batch_size,
        # Each download keeps its own deadline; this only catches a loop that stopped answering.
        stall_timeout_s=stage.stall_backstop_s,
        while_waiting=heartbeat,
    )
    write_outputs("out", op.merge("all-out", downloaded, tasks.errs), settings, STAGE)
    return flow


def __getattr__(name: str) -> Dataflow:
    return flow_attribute(name, STAGE.name, build)
