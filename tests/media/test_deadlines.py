"""The batch backstop of the download and upload steps: derived from each item's bound, far
above what a batch of slow but live peers takes, and computed for the batch actually given."""

from __future__ import annotations

import math

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from claimx_flow.config import Settings
from claimx_flow.media.deadlines import BACKSTOP_MARGIN_S, batch_backstop_s
from claimx_flow.stages.download import MAX_URL_REFRESHES, DownloadStage
from claimx_flow.stages.upload import UploadStage
from operators.async_step import async_flat_map_batch


def test_the_backstop_is_twice_the_rounds_of_item_bounds_plus_a_margin() -> None:
    assert batch_backstop_s(20, 10, 60.0) == 2 * 2 * 60.0 + BACKSTOP_MARGIN_S
    assert batch_backstop_s(1, 10, 60.0) == 2 * 60.0 + BACKSTOP_MARGIN_S
    assert batch_backstop_s(0, 10, 60.0) == batch_backstop_s(1, 10, 60.0)


def test_the_download_backstop_outlasts_a_batch_of_slow_live_hosts() -> None:
    """Every task of a default batch using all its time (two URL refreshes, three fetches,
    each to its deadline) in rounds of DOWNLOAD_CONCURRENCY: still within the backstop. The
    old backstop (4 x the timeout, 240 s) fell short of it (360 s)."""
    settings = Settings()
    stage = DownloadStage.from_settings(settings)
    worst = math.ceil(settings.download_batch_size / settings.download_concurrency) * (
        (2 * MAX_URL_REFRESHES + 1) * settings.download_timeout_seconds
    )
    assert stage.batch_backstop_s(settings.download_batch_size) >= 2 * worst
    assert worst > settings.download_timeout_seconds * 4


def test_the_upload_backstop_outlasts_a_batch_of_slow_live_uploads() -> None:
    settings = Settings()
    assert (settings.upload_concurrency, settings.upload_timeout_seconds) == (10, 60.0)
    stage = UploadStage.from_settings(settings)
    rounds = math.ceil(settings.upload_batch_size / settings.upload_concurrency)
    assert stage.batch_backstop_s(settings.upload_batch_size) >= (
        2 * rounds * settings.upload_timeout_seconds
    )


def test_the_async_step_asks_for_the_backstop_of_each_batch() -> None:
    """Batches after ``redistribute`` are not bounded by the input's batch size, so the step
    computes the backstop from the length of the batch it was given."""
    asked: list[int] = []

    def backstop(items: int) -> float:
        asked.append(items)
        return 10.0

    async def same(batch: list[int]) -> list[int]:
        return batch

    out: list[int] = []
    flow = Dataflow("backstop")
    numbers = op.input("in", flow, TestingSource(range(7), batch_size=7))
    same_out = async_flat_map_batch("same", numbers, same, batch_timeout_s=backstop)
    op.output("out", same_out, TestingSink(out))
    run_main(flow)
    assert sorted(out) == list(range(7))
    assert sum(asked) == 7
