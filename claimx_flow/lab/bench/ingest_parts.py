"""Ingest's own code alone: ``python -m claimx_flow.lab.bench.ingest_parts [EVENTS] [ROUNDS]``.

The ingest bench runs the whole stage: events from Kafka, rows to Delta, tasks to Kafka, all
through Bytewax, on the cores the broker shares. This runs the stage's own ``Ingester.ingest``
on the bench's ``mixed`` workload (same plan, same seed), in batches of 500 records as a
partition's poll hands them over, and prints the CPU it spent per event: reading and checking
the event, the ``claimx_events`` columns in Arrow, the task's message. It is the figure to
compare two commits by, alternating them, where the stage bench moves with the machine.
"""

from __future__ import annotations

import sys
import time

from claimx_flow.config import load_settings
from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.lab.bench.harness import BenchConfig
from claimx_flow.lab.bench.ingest import DEFAULT_EVENTS, workload
from claimx_flow.lab.simulator.events import event_lines
from claimx_flow.stages.ingest import Ingester

BATCH = 500


def batches(events: int) -> list[RecordBatch]:
    """The bench's mixed events as Kafka records, in batches of one poll."""
    records = [
        KafkaRecord("claimx.events", 0, offset, 0, key.encode(), line.encode())
        for offset, (key, line) in enumerate(event_lines(workload(events, BenchConfig().seed)))
    ]
    return [
        RecordBatch("0-claimx.events", records[i : i + BATCH])
        for i in range(0, len(records), BATCH)
    ]


def main(events: int = DEFAULT_EVENTS, rounds: int = 5) -> None:
    work = batches(events)
    ingester = Ingester.from_settings(load_settings())
    for _ in range(rounds):
        started, tasks, others = time.process_time(), 0, 0
        for batch in work:
            for record in ingester.ingest(batch).records:
                if record.topic == ingester.pending_topic:
                    tasks += 1
                else:
                    others += 1
        spent = time.process_time() - started
        print(
            f"Ingester.ingest: {spent / events * 1e6:5.2f} us of CPU per event "
            f"({tasks:,} tasks, {others:,} dead letters)",
            flush=True,
        )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
