"""Where enrichment's cost is: ``python -m claimx_flow.lab.bench.enrich_parts [EVENTS]``.

The enrich bench runs the whole stage: tasks from Kafka, API calls over HTTP, rows to Delta,
download tasks to Kafka, all through Bytewax. This runs the stage's own ``EnrichStage.enrich``
on the bench's file-heavy workload, in batches of the stage's size, twice:

- with the API's answers already in memory (the simulator's own documents, parsed from JSON
  as the client parses them), so the figure is the stage's Python alone;
- with the real client calling a real simulator over HTTP.

The CPU per event of the first is the stage's own code; the second adds the API client, and
says what the simulator spent answering (it shares the machine's cores with the stage, here
and in the bench); the bench's CPU per event adds Kafka, Bytewax and the Delta commits. Each
run has a stage of its own, so a project is cached only within a run, as in the bench (where a
project whose events straddle two batches finds itself cached in the second). The in-memory
answers are whole media lists, as the bench's batches mostly ask for (more than five of a
project's files).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any, cast

from claimx_flow.config import Settings, load_settings
from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.lab.bench.enrich import enrichment_tasks
from claimx_flow.lab.bench.harness import BenchConfig
from claimx_flow.lab.bench.measure import cpu_seconds
from claimx_flow.lab.bench.thread_cpu import process_cpu_s
from claimx_flow.lab.simulator import SimulatorConfig, SimulatorProcess, data, start_subprocess
from claimx_flow.lab.simulator.events import EventPlan
from claimx_flow.stages.enrich import EnrichStage

EVENTS = 20_000
SEED = BenchConfig().seed  # the bench's default seed


class AnswersInMemory:
    """The calls file events make, answered from the simulator's documents without HTTP: a
    measuring aid, not a test double (the bench and the tests call the real simulator)."""

    def __init__(self, settings: Settings) -> None:
        self.media_base = settings.claimx_api_url

    async def open(self) -> AnswersInMemory:
        return self

    async def close(self) -> None:
        return None

    async def get_project(self, project_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(_project_json(int(project_id)))["data"]
        return answer

    async def get_media(
        self, project_id: str, media_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(_media_json(self.media_base, int(project_id)))
        return items


@cache
def _project_json(project_id: int) -> str:
    return json.dumps(data.project_response(SEED, project_id))


@cache
def _media_json(base: str, project_id: int) -> str:
    expires = "2099-01-01T00:00:00Z"
    return json.dumps(
        [
            data.media_item(SEED, media_id, f"{base}/media/{media_id}?X-Amz-Signature=0", expires)
            for media_id in data.media_ids(SEED, project_id)
        ]
    )


def batches(events: int, size: int) -> list[RecordBatch]:
    """The bench's file-heavy tasks as Kafka records, in batches of the stage's size."""
    tasks = enrichment_tasks(
        EventPlan(events, projects=events // 20 + 1, mix="file-heavy", seed=SEED)
    )
    records = [
        KafkaRecord("enrichment.pending", 0, offset, 0, task.kafka_key, task.to_json())
        for offset, task in enumerate(tasks)
    ]
    return [
        RecordBatch("0-enrichment.pending", records[i : i + size])
        for i in range(0, len(records), size)
    ]


async def _enrich_all(stage: EnrichStage, work: Sequence[RecordBatch]) -> int:
    """Every batch through the stage; the download tasks written (one per event when all is
    well)."""
    written = 0
    for batch in work:
        out = await stage.enrich(batch)
        written += sum(1 for record in out.records if record.topic.endswith("downloads.pending"))
    return written


def _run(
    name: str,
    stage: EnrichStage,
    work: list[RecordBatch],
    events: int,
    simulator: SimulatorProcess | None = None,
) -> None:
    """One run of ``work`` through ``stage``; with ``simulator``, its CPU per event too: it
    shares the cores the stage runs on, in this split and in the bench."""
    peer = simulator.process.pid if simulator is not None else None

    async def timed() -> tuple[float, float, float, int]:
        peer_cpu = process_cpu_s(peer) if peer is not None else 0.0
        started, cpu = time.perf_counter(), cpu_seconds()
        try:
            written = await _enrich_all(stage, work)
        finally:
            await stage.close()
        peer_used = process_cpu_s(peer) - peer_cpu if peer is not None else 0.0
        return time.perf_counter() - started, cpu_seconds() - cpu, peer_used, written

    seconds, cpu, peer_used, written = asyncio.run(timed())
    served = f"; simulator {peer_used / events * 1e6:4.1f} us per event" if peer else ""
    print(
        f"{name:>22}: {events / seconds:>7,.0f} events/s, {cpu / events * 1e6:5.1f} us of CPU "
        f"per event{served} ({written:,} download tasks)"
    )


def main(events: int = EVENTS, rounds: int = 2) -> None:
    simulator = start_subprocess(SimulatorConfig(seed=SEED))
    try:
        config = SimulatorConfig(seed=SEED)
        settings = load_settings(
            claimx_api_url=simulator.api_url,
            claimx_api_username=config.username,
            claimx_api_password=config.password,
        )
        work = batches(events, settings.enrichment_batch_size)
        for project_id in {int(r.key or b"0") for batch in work for r in batch.records}:
            _project_json(project_id)  # the answers made before the clock starts
            _media_json(settings.claimx_api_url, project_id)
        for _ in range(rounds):
            # A stage each run, so no project is cached from the run before.
            stage = EnrichStage.from_settings(settings)
            in_memory = replace(stage, make_client=cast(Callable[[Settings], Any], AnswersInMemory))
            _run("answers in memory", in_memory, work, events)
            _run("API over HTTP", stage, work, events, simulator)
    finally:
        simulator.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else EVENTS)
