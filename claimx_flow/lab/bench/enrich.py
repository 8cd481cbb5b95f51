"""enrich on ``file-heavy`` and ``project-created``, beside the simulator's own request rate.

The raw limit of enrichment is the API: a bare aiohttp loop makes the very calls the workload
needs (the same endpoints, the same ids, the stage's concurrency) as fast as the simulator
answers them, and that rate times the batching ratio the stage achieved (events per API call)
is the most events per second any enricher could reach against this API on this machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp

from claimx_flow.config import Settings
from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.harness import BenchEnv, reset_simulator, simulator_stats
from claimx_flow.lab.bench.outcome import outcome
from claimx_flow.lab.bench.progress import Phases
from claimx_flow.lab.bench.report import Limit, StageResult
from claimx_flow.lab.bench.runner import expect, fill_run, run_until_drained
from claimx_flow.lab.simulator import SimulatorConfig
from claimx_flow.lab.simulator.events import EventPlan, Mix, event_lines
from claimx_flow.models import EnrichmentTask, RawEvent

FILE_HEAVY_EVENTS = 60_000
PROJECT_CREATED_EVENTS = 10_000
BARE_SECONDS = 5.0

Call = tuple[str, dict[str, str] | None]


def bench(env: BenchEnv, phases: Phases) -> list[StageResult]:
    return [
        file_heavy(env, phases),
        _bench_mix(env, phases, "project-created", env.config.size(PROJECT_CREATED_EVENTS)),
    ]


def file_heavy(env: BenchEnv, phases: Phases) -> StageResult:
    return _bench_mix(env, phases, "file-heavy", env.config.size(FILE_HEAVY_EVENTS))


def _bench_mix(env: BenchEnv, phases: Phases, mix: Mix, events: int) -> StageResult:
    settings = env.stage_settings(f"enrich-{mix}")
    sim = env.simulator(env.config.media_bytes)
    result = StageResult("enrich", mix, "events", events)
    # One event per project for project-created; whole bursts, never repeated, for file-heavy.
    projects = events if mix == "project-created" else events // 20 + 1
    tasks = enrichment_tasks(EventPlan(events, projects=projects, mix=mix, seed=env.config.seed))
    messages = [(t.kafka_key, t.to_json(), None) for t in tasks]
    update = phases.start(f"enrich {mix}: preload", events)
    kafka_io.produce(settings, settings.claimx_enrichment_pending_topic, messages, update)
    calls = api_calls_for(tasks)
    phases.start(f"enrich {mix}: bare API loop ({len(calls):,} calls max)", None)
    calls_per_s, made, seconds = asyncio.run(hammer(settings, calls, BARE_SECONDS))
    reset_simulator(sim)
    outputs = [
        settings.claimx_downloads_pending_topic,
        settings.claimx_enrichment_dlq_topic,
        *settings.enrichment_retry_topics,
    ]
    drained = run_until_drained(env, settings, "enrich", events, outputs, phases, f"enrich {mix}")
    fill_run(result, drained)
    stats = simulator_stats(sim)
    result.api_calls = int(stats["api_calls"])
    result.api_calls_per_item = result.api_calls / events
    result.extra["simulator_statuses"] = stats["statuses"]
    batching = events / max(result.api_calls, 1)
    result.set_raw(
        Limit(
            f"the simulator's own request rate, {calls_per_s:,.0f} calls/s (a bare aiohttp loop "
            f"making the workload's own calls at concurrency {settings.claimx_api_concurrency}, "
            f"{made:,} calls in {seconds:.1f} s) x the achieved batching ratio "
            f"({batching:,.1f} events per API call)",
            calls_per_s * batching,
            made,
            round(seconds, 3),
        )
    )
    _check(result, drained.spans, settings, tasks, mix)
    downloads, dlq = settings.claimx_downloads_pending_topic, settings.claimx_enrichment_dlq_topic
    result.outcome = outcome(settings, {"downloads": downloads, "dlq": dlq})
    return result


def _check(
    result: StageResult,
    spans: dict[str, kafka_io.Span],
    settings: Settings,
    tasks: list[EnrichmentTask],
    mix: Mix,
) -> None:
    failed = sum(spans[t].count for t in (settings.claimx_enrichment_dlq_topic,))
    failed += sum(spans[t].count for t in settings.enrichment_retry_topics)
    expect(result, "tasks failed (DLQ or retry tier)", failed, 0)
    if mix == "file-heavy":
        downloads = spans[settings.claimx_downloads_pending_topic].count
        expect(result, "download tasks written", downloads, len(tasks))
    result.outputs.update(kafka_io.delta_rows(settings.tables_dir))
    if mix == "project-created":
        projects = len({t.project_id for t in tasks})
        expect(result, "claimx_projects rows", result.outputs.get("claimx_projects", 0), projects)


def enrichment_tasks(plan: EventPlan) -> list[EnrichmentTask]:
    """The tasks ingest would write for the plan's events."""
    return [
        EnrichmentTask.from_event(RawEvent.from_source(json.loads(line)))
        for _, line in event_lines(plan)
    ]


def api_calls_for(tasks: list[EnrichmentTask]) -> list[Call]:
    """The calls an enricher needs at best: a project call per project (every event of a
    project-created workload), and one media list per project with files."""
    calls: list[Call] = []
    seen: set[str] = set()
    for task in tasks:
        if task.event_type == "PROJECT_CREATED":
            calls.append((f"/export/project/{task.project_id}", None))
        elif task.project_id not in seen:
            calls.append((f"/export/project/{task.project_id}", None))
            calls.append((f"/export/project/{task.project_id}/media", None))
        seen.add(task.project_id)
    return calls


async def hammer(
    settings: Settings, calls: list[Call], max_seconds: float
) -> tuple[float, int, float]:
    """Make ``calls`` at the API concurrency until done or ``max_seconds``: (calls/s, n, s)."""
    config = SimulatorConfig()
    token = base64.b64encode(f"{config.username}:{config.password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
    concurrency = settings.claimx_api_concurrency
    queue = iter(calls)
    done = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal done
            for path, params in queue:
                if time.perf_counter() > deadline:
                    return
                async with session.get(settings.claimx_api_url + path, params=params) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"bare API loop: HTTP {response.status} for {path}")
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return done / seconds, done, seconds
