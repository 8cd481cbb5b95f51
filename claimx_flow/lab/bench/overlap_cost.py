"""What the overlapped step costs per item, alone: ``python -m claimx_flow.lab.bench.overlap_cost``.

Runs ``overlapped_flat_map`` over 60,000 items in batches of 20 (the download stage's batch)
with a mapper that does nothing, once with one lane per item and once with one lane per batch
(``together``), and prints items per second and CPU per item. No broker, HTTP or disk: what it
measures is the step's own Python and Bytewax's, the part of a download's cost the stage adds
around the fetch.
"""

from __future__ import annotations

import resource
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.overlapped import overlapped_flat_map

ITEMS = 60_000
BATCH = 20


async def _nothing(item: int) -> list[int]:
    return [item]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(together: int, items: int = ITEMS) -> tuple[float, float]:
    """Items per second and CPU microseconds per item through the step."""
    flow = Dataflow("overlap-cost")
    source = op.input("in", flow, TestingSource(range(items), batch_size=BATCH))
    done = overlapped_flat_map(
        "work", source, _nothing, max_in_flight=2 * BATCH, stall_timeout_s=60, together=together
    )
    out: list[int] = []
    op.output("out", done, TestingSink(out))
    started, cpu = time.perf_counter(), _cpu_seconds()
    run_main(flow)  # type: ignore[no-untyped-call]  # bytewax.testing has no annotations
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    if len(out) != items:
        raise RuntimeError(f"{len(out)} of {items} items came out")
    return items / seconds, cpu / items * 1e6


def main() -> None:
    for together in (1, BATCH, 1, BATCH):
        rate, cpu = measure(together)
        print(f"together={together:>2}: {rate:>9,.0f} items/s, {cpu:5.1f} us of CPU per item")


if __name__ == "__main__":
    main()
