"""A slow API: each group of tasks has its whole deadline from its turn, and a stop still
drains within one deadline.

Found by review: a group's deadline (two calls with every retry) started when its read
arrived, before its calls waited for one of the client's slots. With thousands of tasks in
flight and answers slower than about half a second, later groups ran out of their deadline in
the process's own queue, unsent, and spent retries into the DLQ. The API here is the simulator
over real HTTP, made slow; the stop goes to a real enrich process, on a real broker.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claimx_flow.api import ClaimXApiClient
from claimx_flow.config import Settings
from claimx_flow.enrichment import Enriched, EnrichedBatch, Enricher, EnrichmentFailed, ProjectCache
from claimx_flow.enrichment.turns import Turns
from claimx_flow.errors import ErrorCategory
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.models import EnrichmentTask, FailureInfo
from claimx_flow.models.failure import MessageOrigin
from claimx_flow.stages.enrich import TURNS_PER_CALL, EnrichStage
from tests.isolation import isolated_settings
from tests.poison.harness import RawRecord, produce_exact, read_topics, table
from tests.simulator_fixtures import SIMULATOR_SEED as SEED

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def created(project_id: int) -> EnrichmentTask:
    return EnrichmentTask(
        event_id=f"created-{project_id}",
        event_type="PROJECT_CREATED",
        project_id=str(project_id),
        ingested_at=NOW,
    )


def file_added(project_id: int) -> EnrichmentTask:
    return EnrichmentTask(
        event_id=f"file-{project_id}",
        event_type="PROJECT_FILE_ADDED",
        project_id=str(project_id),
        media_id=sim_data.media_ids(SEED, project_id)[0],
        ingested_at=NOW,
    )


async def overlapping(
    settings: Settings,
    sim: RunningSimulator,
    first_tasks: list[EnrichmentTask],
    second_tasks: list[EnrichmentTask],
    asked: int,
) -> tuple[EnrichedBatch, EnrichedBatch, float]:
    """Two batches of one enricher: the second starts 0.2 s after the simulator has been asked
    the first batch's ``asked`` project calls. Both batches, and how long the second took."""
    async with ClaimXApiClient(settings) as client:
        enricher = Enricher(client, ProjectCache(), clock=lambda: NOW)
        first = asyncio.ensure_future(enricher.enrich(first_tasks))
        while sim.stats.requests["project"] < asked:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        started = time.monotonic()
        second = await enricher.enrich(second_tasks)
        took = time.monotonic() - started  # before the first batch is awaited
        return await first, second, took


def last_attempt_headers(settings: Settings) -> list[tuple[str, bytes | None]]:
    """Failure headers of a task that has failed ``MAX_RETRIES`` times: one more failure that
    spends an attempt sends it to the DLQ."""
    info = FailureInfo.from_reason(
        "HTTP 503",
        error_class="ClaimXApiError",
        origin=MessageOrigin(settings.claimx_enrichment_pending_topic, 0, 0),
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
    ).model_copy(update={"attempt": settings.max_retries})
    return list(info.to_headers())


def task_groups(port: int) -> dict[str, float]:
    """``claimx_enrich_task_groups`` by state, scraped from the stage's own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "claimx_enrich_task_groups"
        for sample in family.samples
    }


def test_every_group_has_its_whole_deadline_from_its_turn(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    """40 projects, one call each, answered in 0.15 s one at a time: 6 s for the batch, and a
    deadline of 1 s per group. Counted from the batch's start, 34 of them timed out; counted
    from each group's turn, every one is enriched."""
    settings = api_settings.model_copy(update={"claimx_api_concurrency": 1})
    sim.set_faults(latency_ms=150)

    async def run() -> EnrichedBatch:
        async with ClaimXApiClient(settings) as client:
            turns = Turns(TURNS_PER_CALL * settings.claimx_api_concurrency)
            enricher = Enricher(
                client, ProjectCache(), clock=lambda: NOW, deadline_s=1.0, turns=turns
            )
            return await enricher.enrich([created(7000 + i) for i in range(40)])

    try:
        batch = asyncio.run(run())
    finally:
        sim.reset()
    failed = [o for o in batch.outcomes if isinstance(o, EnrichmentFailed)]
    assert failed == []
    assert sum(isinstance(o, Enriched) for o in batch.outcomes) == 40
    assert {
        row["project_id"] for table, row in batch.project_rows if table == "claimx_projects"
    } == {str(7000 + i) for i in range(40)}


def test_a_stop_under_a_slow_api_drains_within_one_deadline(
    kafka_bootstrap: str, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """300 projects against an API answering one call at a time in 0.3 s (90 s of work), a
    2 s deadline per group, and a SIGTERM once the first calls are answered. The process ends by
    itself with 0 well before the work could be done; every task is in the projects table or
    in the first retry tier, never both, never the DLQ; and every task routed was turned away
    by the stop, none timed out waiting in the queue. (A read's rows are written when the whole
    read is done, so the stop comes once the API has been called a few times.)"""
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=simulator,
        claimx_api_concurrency=1,
        claimx_api_timeout_seconds=1.0,
        claimx_api_max_retries=0,
        claimx_snapshot_interval_seconds=2,
    )
    stage = EnrichStage.from_settings(settings)
    assert stage.item_deadline_s == 2.0
    tasks = [created(8000 + i) for i in range(300)]
    last_try = last_attempt_headers(settings)
    produce_exact(
        settings,
        settings.claimx_enrichment_pending_topic,
        [  # every tenth on its last retry: a stop must not send it to the DLQ
            RawRecord(t.to_json(), t.kafka_key, last_try if i % 10 == 9 else [])
            for i, t in enumerate(tasks)
        ],
    )
    simulator.set_faults(latency_ms=300)
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    try:
        pipeline.start(["enrich"])
        (process,) = pipeline.processes["enrich"]
        deadline = time.monotonic() + 60
        while simulator.stats.requests["project"] < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert simulator.stats.requests["project"] >= 5, "no call before the stop"
        # What an operator sees meanwhile: every turn (4 for one call at a time) taken, the
        # rest of the read's groups waiting for one.
        groups = task_groups(pipeline.health_ports["enrich"][0])
        assert groups["in_turn"] == 4 and groups["waiting"] > 100, groups
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(stage.drain_bound_s + 30)
        except subprocess.TimeoutExpired:
            returncode = None
        drained_s = time.monotonic() - stopped_at
    finally:
        pipeline.stop(grace_s=10)
        simulator.reset()
    log = (tmp_path / "logs" / "enrich.log").read_text(errors="replace")
    assert returncode == 0, log[-3000:]
    assert drained_s < 40, drained_s  # the 90 s of work left was not waited for
    # A graceful stop is no error: its HTTP session closes at exit, not under asyncio's ERROR.
    assert [line for line in log.splitlines() if " ERROR " in line] == []

    written = {row["project_id"] for row in table(settings, "claimx_projects")}
    routed = read_topics(settings, settings.enrichment_retry_topics)
    dead = read_topics(settings, [settings.claimx_enrichment_dlq_topic])
    routed_ids = [EnrichmentTask.from_json(r.value).project_id for r in routed]
    assert dead == []
    assert len(routed_ids) == len(set(routed_ids))
    assert written.isdisjoint(routed_ids)
    assert written | set(routed_ids) == {t.project_id for t in tasks}
    assert len(written) < 150  # the stop came long before the work was done
    failures = [FailureInfo.from_headers(r.headers) for r in routed]
    assert {f.error_class for f in failures} == {"Stopping"}
    # No attempt spent: each waits in the tier of the attempts it had (a first try: the first).
    on_last_try = {t.project_id for i, t in enumerate(tasks) if i % 10 == 9}
    tier_of = {topic: n for n, topic in enumerate(settings.enrichment_retry_topics, start=1)}
    for copy, failure, project_id in zip(routed, failures, routed_ids, strict=True):
        expected = settings.max_retries if project_id in on_last_try else 0
        assert failure.attempt == expected, (project_id, failure.attempt)
        assert tier_of[copy.topic] == max(expected, 1)
    assert on_last_try & set(routed_ids)


def test_a_project_answer_no_row_comes_from_frees_its_waiters_at_once(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    """A batch's project answer from which no row can be built (wrong types) frees the later
    batches waiting for that project at once, not when the whole first batch is done: found
    waiting (in a turn, against a slow API) until then. The first batch is held 3 s by another
    call; the second fetches the project itself, and fails on the same answer well before."""
    bad, held = 7100, 7101
    sim.set_faults(
        fail_next=["timeout"],  # the first call made: the held project's
        hang_s=3.0,
        hostile={"projects": {str(bad): "wrong_types"}},
    )
    settings = api_settings.model_copy(update={"claimx_api_timeout_seconds": 10.0})
    try:
        first, second, waited = asyncio.run(
            overlapping(settings, sim, [created(held), created(bad)], [file_added(bad)], 2)
        )
    finally:
        sim.reset()
    refused = first.outcomes[1]
    assert isinstance(refused, EnrichmentFailed) and refused.error_class == "PayloadError", refused
    (outcome,) = second.outcomes
    assert isinstance(outcome, EnrichmentFailed) and outcome.error_class == "PayloadError", outcome
    assert waited < 1.5, waited


@pytest.mark.parametrize("waiting", ["before the answer", "after the answer"])
def test_a_project_whose_rows_do_not_fit_is_never_told_written_to_a_later_batch(
    api_settings: Settings, sim: RunningSimulator, waiting: str
) -> None:
    """A project's answer builds its row, but the row does not fit its table (a lone surrogate
    in a team member's name): the first batch fails the project's tasks at its end. A later
    batch of the same project, started while the first was still running (waiting for the
    answer, or after it came in), must fail the same way. Found failing: it was told the row
    was written as soon as it was built, and went on to a media row and a download task for a
    project that never reached ``claimx_projects``."""
    bad, held = 7104, 7103  # 7104's answer builds, but a contact's e-mail Arrow cannot encode
    hostile = {"projects": {str(bad): "lone_surrogates"}}
    if waiting == "before the answer":  # every project answer takes a second
        sim.set_faults(latency_ms=1000.0, hostile=hostile)
    else:  # the first batch is held 3 s by another project's call, after the bad answer
        sim.set_faults(fail_next=["timeout"], hang_s=3.0, hostile=hostile)
    settings = api_settings.model_copy(update={"claimx_api_timeout_seconds": 10.0})

    first_batch = (
        [created(bad)] if waiting == "before the answer" else [created(held), created(bad)]
    )
    try:
        first, second, waited = asyncio.run(
            overlapping(settings, sim, first_batch, [file_added(bad)], len(first_batch))
        )
    finally:
        sim.reset()
    (unfit,) = [o for o in first.outcomes if o.task.project_id == str(bad)]
    assert isinstance(unfit, EnrichmentFailed) and "claimx_contacts" in unfit.message, unfit
    (outcome,) = second.outcomes
    assert isinstance(outcome, EnrichmentFailed), outcome  # no media row, no download task
    assert outcome.error_class == "PayloadError" and outcome.category is ErrorCategory.PERMANENT
    written = {row["project_id"] for _, row in first.project_rows + second.project_rows}
    assert str(bad) not in written
    if waiting == "after the answer":  # it checked the built rows itself: no wait for the
        assert waited < 1.5, waited  # first batch's held call (and the order was as named)
