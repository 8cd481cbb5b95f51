"""ingest on the ``mixed`` workload: throughput, per-event latency, and a bare passthrough.

Throughput comes from a preloaded topic drained by the stage. Latency cannot come from that run
(every event would wait for the process to start), so a second, paced run feeds events at half
the measured rate into a running stage and times each event from the create time of its raw
record to the create time of its enrichment task.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import consumer_config, produce_or_wait, producer_config
from claimx_flow.lab.bench import kafka_io
from claimx_flow.lab.bench.harness import BenchEnv
from claimx_flow.lab.bench.measure import Stopwatch, percentiles
from claimx_flow.lab.bench.outcome import outcome
from claimx_flow.lab.bench.progress import Phases, Update
from claimx_flow.lab.bench.report import Limit, StageResult
from claimx_flow.lab.bench.runner import expect, fill_run, run_until_drained
from claimx_flow.lab.bench.stage_process import StageProcess
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.models import RawEvent

DEFAULT_EVENTS = 100_000
MAX_LATENCY_RATE = 5_000.0


def bench(env: BenchEnv, phases: Phases, latency: bool = True) -> list[StageResult]:
    """Throughput beside the bare passthrough; then, with ``latency``, the paced run."""
    events = env.config.size(DEFAULT_EVENTS)
    settings = env.stage_settings("ingest")
    result = StageResult("ingest", "mixed", "events", events)
    lines = [
        (key.encode(), line.encode(), None)
        for key, line in event_lines(workload(events, seed=env.config.seed))
    ]
    kafka_io.produce(
        settings, settings.claimx_events_topic, lines, phases.start("ingest: preload", events)
    )
    scratch = env.scratch_topic(settings, "passthrough")
    phases.start("ingest: bare consume→produce", events)
    raw = bare_passthrough(settings, settings.claimx_events_topic, scratch)
    pending, dlq = settings.claimx_enrichment_pending_topic, settings.claimx_events_dlq_topic
    drained = run_until_drained(env, settings, "ingest", events, [pending, dlq], phases, "ingest")
    fill_run(result, drained)
    result.set_raw(raw)
    expect(result, "enrichment tasks written", drained.output(pending), events)
    result.outputs.update(kafka_io.delta_rows(settings.tables_dir))
    expect(result, "claimx_events rows", result.outputs.get("claimx_events", 0), events)
    result.outcome = outcome(settings, {"tasks": pending, "dlq": dlq})
    rate = min(MAX_LATENCY_RATE, 0.5 * (result.throughput_per_s or 0))
    if latency and rate >= 10:
        _latency_phase(env, phases, result, rate)
    return [result]


def workload(events: int, seed: int) -> EventPlan:
    """The bench's ingest workload: ``mixed`` events, about 50 to a project."""
    return EventPlan(events, projects=max(10, events // 50), mix="mixed", seed=seed)


UPSTREAM_LINGER_MS = 5
"""The paced feed's linger: librdkafka's default, as a producer upstream of us would have."""


def bare_passthrough(settings: Settings, source: str, target: str) -> Limit:
    """The same messages consumed and produced again by one bare confluent-kafka loop, with the
    stage's own producer settings (idempotent, acks=all, lz4, `KAFKA_LINGER_MS`)."""
    consumer = Consumer(
        {
            **consumer_config(settings, group_id=f"{target}-bare", **{"fetch.wait.max.ms": 50}),
            "enable.partition.eof": True,
        }
    )
    parts = kafka_io.partitions_of(consumer, source)
    consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in parts])
    producer = Producer(producer_config(settings))
    done: set[int] = set()
    moved, clock = 0, None
    while len(done) < len(parts):
        for msg in consumer.consume(1000, 0.1):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(int(msg.partition() or 0))
                continue
            clock = clock or Stopwatch()
            produce_or_wait(
                producer, target, value=msg.value(), key=msg.key(), headers=msg.headers()
            )
            moved += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    seconds = clock.seconds if clock else 0.0
    return Limit(
        "a bare confluent-kafka consume→produce loop of the same messages (one thread, the "
        "stage's producer settings), first message consumed → last delivery confirmed",
        moved / max(seconds, 1e-3),
        moved,
        round(seconds, 3),
    )


def _latency_phase(env: BenchEnv, phases: Phases, result: StageResult, rate: float) -> None:
    count = max(50, int(rate * env.config.latency_seconds))
    settings = env.stage_settings("ingest-latency", claimx_stop_at_end=False)
    warm_ups = env.config.partitions
    plan = workload(warm_ups + count, seed=env.config.seed + 1)
    lines = list(event_lines(plan))
    logs = settings.claimx_data_dir / "logs"
    process = StageProcess(
        settings, "ingest", logs, workers=env.config.workers, processes=env.config.processes
    ).start()
    try:
        process.wait_ready()
        producer = Producer(producer_config(settings, **{"linger.ms": UPSTREAM_LINGER_MS}))
        counter = kafka_io.TopicCounter(settings, settings.claimx_enrichment_pending_topic)
        _warm_up(
            process,
            producer,
            settings.claimx_events_topic,
            lines[:warm_ups],
            counter,
            env.config.stage_timeout_s,
        )
        update = phases.start(f"ingest: paced feed at {rate:,.0f} events/s", count)
        _paced_produce(producer, settings.claimx_events_topic, lines[warm_ups:], rate, update)
        total = warm_ups + count
        process.wait(env.config.stage_timeout_s, stop_when=lambda: counter.count() >= total)
        counter.close()
    except BaseException:
        process.kill()
        raise
    warmed = {RawEvent.from_kafka(line.encode()).event_id for _, line in lines[:warm_ups]}
    sent = {
        event.event_id: r.timestamp
        for r in kafka_io.read_all(settings, settings.claimx_events_topic)
        if (event := RawEvent.from_kafka(r.value)).event_id not in warmed
    }
    done = {
        json.loads(r.value or b"{}")["event_id"]: r.timestamp
        for r in kafka_io.read_all(settings, settings.claimx_enrichment_pending_topic)
    }
    latencies = [(done[i] - at) * 1000 for i, at in sent.items() if i in done]
    result.latency_ms = {k: round(v, 1) for k, v in percentiles(latencies).items()}
    result.latency_what = (
        f"per event, raw record create time → enrichment task create time, {len(latencies):,} "
        f"events fed at {rate:,.0f}/s (half the measured throughput, at most "
        f"{MAX_LATENCY_RATE:,.0f}/s) into a running stage that has read one event from each "
        "partition first"
    )
    expect(result, "events timed in the latency run", len(latencies), len(sent))


def _warm_up(
    process: StageProcess,
    producer: Producer,
    topic: str,
    lines: list[tuple[str, str]],
    tasks: kafka_io.TopicCounter,
    timeout_s: float,
) -> None:
    """One event into each partition, until the stage has written their tasks; not timed.

    A stage ready to poll still starts each partition's consumer: it looks up its offsets and
    fetches for the first time, and the feed's producer gets its producer id, about a second
    in all. Timed, the first second's events carried that start-up: the p99 of 0.75-0.95 s of
    every run before ``17bfbcc``, 65-68 ms since."""
    for partition, (key, line) in enumerate(lines):
        produce_or_wait(producer, topic, value=line.encode(), key=key.encode(), partition=partition)
    if producer.flush(30):
        raise ClaimxError("the feed could not deliver its warm-up events")
    process.wait_for(
        lambda: tasks.count() >= len(lines),
        timeout_s,
        during="the warm-up",
        late=f"had not written its {len(lines)} warm-up tasks",
    )


def _paced_produce(
    producer: Producer,
    topic: str,
    lines: list[tuple[str, str]],
    rate: float,
    update: Update,
) -> None:
    """Produce at ``rate`` per second, in small bursts every 10 ms.

    The feed stands for ClaimX's own producer, whose linger is not ours: librdkafka's default
    of 5 ms, so the figure does not change with ``KAFKA_LINGER_MS``. It runs from the event's
    create time to its task's, both stamped when produced: the stage's own linger, up to
    ``KAFKA_LINGER_MS`` before its task can be read, is not in it."""
    started = time.perf_counter()
    for index, (key, line) in enumerate(lines):
        due = started + index / rate
        wait = due - time.perf_counter()
        if wait > 0.01:
            producer.poll(0)
            update(index)
            time.sleep(wait)
        produce_or_wait(producer, topic, value=line.encode(), key=key.encode())
    producer.flush(60)
    update(len(lines))
