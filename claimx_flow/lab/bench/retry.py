"""retry: 100,000 messages held in one tier, then released as they fall due.

The retry stage tails its tiers (it never ends by itself), so it is started first and fed once
ready: every message carries its due time in its failure headers, the first a few seconds
ahead (``--retry-lead``) and the rest spread over ``--retry-spread`` seconds, in order. While
they wait, the stage should hold only each partition's head; the process's memory is sampled
throughout. Each message's release lateness is the create time of its copy in the pending
topic minus its due time. Once all are back the stage is stopped with SIGTERM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.enrich import enrichment_tasks
from claimx_flow.lab.bench.harness import BenchEnv
from claimx_flow.lab.bench.ingest import bare_passthrough
from claimx_flow.lab.bench.measure import MIB, percentiles
from claimx_flow.lab.bench.progress import Phases
from claimx_flow.lab.bench.report import StageResult
from claimx_flow.lab.bench.stage_process import StageProcess, StageRun
from claimx_flow.lab.simulator.events import EventPlan
from claimx_flow.models import FailureInfo, MessageOrigin

DEFAULT_MESSAGES = 100_000
TIER_DELAYS = [1, 2, 3, 4]
_DUE_HEADER = "claimx.due_at"
_PLAN = EventPlan(5_000, projects=500, mix="mixed", seed=1)


def bench(env: BenchEnv, phases: Phases) -> list[StageResult]:
    count = env.config.size(DEFAULT_MESSAGES)
    # Tailing, as in production: the harness's SIGTERM is the only stop. Ending at the input's
    # end as well raced that SIGTERM, and one landing while Python was already exiting (its
    # handler gone) killed the stage with -15 instead of stopping it.
    settings = env.stage_settings("retry", retry_delays=TIER_DELAYS, claimx_stop_at_end=False)
    tier, pending = settings.enrichment_retry_topics[0], settings.claimx_enrichment_pending_topic
    result = StageResult("retry", f"held-{count}", "messages", count)
    logs, profile = settings.claimx_data_dir / "logs", env.config.profile("retry")
    process = StageProcess(
        settings, "retry", logs, profile, env.config.workers, env.config.processes
    ).start()
    try:
        process.wait_ready()
        ready_at = time.time()
        first_due = ready_at + env.config.retry_lead_s
        update = phases.start(f"retry: hold {count:,} in {tier.split('.', 1)[1]}", count)
        messages = held_messages(settings, count, first_due, env.config.retry_spread_s)
        kafka_io.produce(settings, tier, messages, update)
        fed_at = time.time()
        update = phases.start("retry: released back to pending", count)
        counter = kafka_io.TopicCounter(settings, pending)

        def released() -> bool:
            done = counter.count()
            update(done)
            return done >= count

        run = process.wait(env.config.stage_timeout_s, stop_when=released)
        counter.close()
    except BaseException:
        process.kill()
        raise
    _fill(result, run, settings, (ready_at, fed_at, first_due), env.config.retry_spread_s)
    phases.start("retry: bare consume→produce of the tier", count)
    result.set_raw(bare_passthrough(settings, tier, env.scratch_topic(settings, "passthrough")))
    return [result]


def held_messages(
    settings: Settings, count: int, first_due: float, spread_s: float
) -> Iterator[kafka_io.Outbound]:
    """Enrichment tasks that failed once, due from ``first_due`` over ``spread_s`` seconds."""
    tasks = [(t.kafka_key, t.to_json()) for t in enrichment_tasks(_PLAN)]
    headers = _failure_headers(settings)
    index = [name for name, _ in headers].index(_DUE_HEADER)
    for i in range(count):
        key, value = tasks[i % len(tasks)]
        due = datetime.fromtimestamp(first_due + spread_s * i / count, UTC)
        message_headers = list(headers)
        message_headers[index] = (_DUE_HEADER, due.isoformat().encode())
        yield key, value, message_headers


def _failure_headers(settings: Settings) -> list[tuple[str, bytes]]:
    info = FailureInfo.from_reason(
        "HTTP 503 from the ClaimX API (bench)",
        error_class="ClaimXApiError",
        origin=MessageOrigin(settings.claimx_enrichment_pending_topic, 0, 0),
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
        due_at=datetime.now(UTC),
    )
    return info.to_headers()


def _fill(
    result: StageResult,
    run: StageRun,
    settings: Settings,
    moments: tuple[float, float, float],
    spread_s: float,
) -> None:
    ready_at, fed_at, first_due = moments
    reads = kafka_io.read_all(settings, settings.claimx_enrichment_pending_topic)
    lateness = []
    for read in reads:
        due = dict(read.headers).get(_DUE_HEADER)
        if due is not None:
            lateness.append(read.timestamp - datetime.fromisoformat(due.decode()).timestamp())
    result.latency_ms = {k: round(v * 1000, 1) for k, v in percentiles(lateness).items()}
    if len(reads) > 1:
        first, last = min(r.timestamp for r in reads), max(r.timestamp for r in reads)
        result.throughput_per_s = len(reads) / max(last - first, 1e-3)
        result.window_s = round(last - first, 3)
    result.latency_what = (
        "release lateness per message: create time of its copy in the pending topic minus its "
        "due time (negative would be an early release)"
    )
    result.extra["early_releases"] = sum(1 for late in lateness if late < -0.001)
    result.wall_s = round(run.wall_s, 2)
    result.cpu_s = round(run.cpu_s, 2)
    result.set_rss(run.peak_rss_bytes)
    result.window = (
        "first release → last release (create times in the pending topic); the due times ask "
        f"for {result.items / max(spread_s, 1e-3):,.0f}/s, so this is the "
        "release rate, bounded by the stage when lateness grows"
    )
    held_peak = run.peak_rss_between(fed_at, first_due)
    result.extra["rss_ready_mib"] = round(run.peak_rss_between(ready_at - 1, ready_at) / MIB, 1)
    result.extra["rss_all_held_mib"] = round(held_peak / MIB, 1)
    result.extra["all_held_before_first_due"] = fed_at < first_due
    result.extra["feed_seconds"] = round(fed_at - ready_at, 2)
    result.extra["spread_s"] = spread_s
    result.outputs["released"] = len(reads)
    if len(reads) != result.items:
        result.problems.append(f"released {len(reads):,} of {result.items:,}")
    if result.extra["early_releases"]:
        result.problems.append(f"{result.extra['early_releases']} released before their due time")
    if fed_at >= first_due:
        result.problems.append("the feed took longer than --retry-lead: not all were held at once")
