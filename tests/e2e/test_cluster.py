"""Every stage as a two-process Bytewax cluster (-i/-a) gives the same outcome as one process,
also when a process is killed and its cluster restarted."""

from __future__ import annotations

import json
import time

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.lab.reconcile import reconcile
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.models import RawEvent
from tests.e2e.conftest import PipelineRun
from tests.simulator_fixtures import SIMULATOR_SEED


def test_two_process_clusters_survive_a_killed_process(
    pipeline_run: PipelineRun, sim: RunningSimulator
) -> None:
    run = pipeline_run
    lines = list(event_lines(EventPlan(count=300, projects=12, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    expected = {
        e.media_id: sim_data.media_content(SIMULATOR_SEED, int(e.media_id), 64 * 1024)
        for e in events
        if e.event_type == "PROJECT_FILE_ADDED" and e.media_id
    }
    run.produce(lines[:150])
    run.pipeline.start(processes=2)
    time.sleep(4)
    for index, stage in enumerate(STAGE_NAMES):  # one process of every stage dies mid-stream
        run.pipeline.kill(stage, index % 2)
        run.pipeline.restart(stage)
    run.produce(lines[150:])

    def settled() -> bool:
        return reconcile(
            run.settings,
            events,
            results_logs=run.pipeline.logs("results"),
            expected_content=expected,
        ).ok

    run.wait_for(settled, timeout_s=180, what="the conservation law")
    final = reconcile(run.settings, events, results_logs=run.pipeline.logs("results"))
    assert final.attachments == final.media == len(expected)
    assert final.dlq == {"events": 0, "enrichment": 0, "download": 0}
