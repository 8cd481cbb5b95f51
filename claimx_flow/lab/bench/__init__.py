"""Benchmarks of each pipeline stage through real Kafka, the API simulator and local storage.

``claimx bench <stage>`` preloads a stage's input topic with a seeded workload, runs the
stage's real dataflow process until it has drained the input (``CLAIMX_STOP_AT_END``), and
measures it beside the raw limit of the same work on the same machine in the same run: a bare
Kafka passthrough, the simulator's own request rate, a bare fetch loop, a bare store loop.
The point is the ratio, not the absolute number: a 2-core laptop and a 16-core node give
different figures, but the share of the machine's limit a stage reaches says whether the stage
or the machine is the bottleneck.
"""

REPORT_SCHEMA = 1
