"""Rescaling with recovery: every stage goes from a 2-process to a 3-process cluster mid-load,
and nothing is lost or doubled across the change: not in the tables (which would hide a
duplicate, being keyed merges) and not on the topics between the stages, where a message read
twice would show as a second copy."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from claimx_flow.lab.reconcile import reconcile
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.models import RawEvent
from tests.e2e.conftest import PipelineRun, load
from tests.simulator_fixtures import SIMULATOR_SEED


def test_two_to_three_processes_under_load(
    pipeline_run: PipelineRun, sim: RunningSimulator
) -> None:
    run = pipeline_run
    lines = list(event_lines(EventPlan(count=300, projects=12, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    run.produce(lines[:150])
    run.pipeline.start(processes=2)
    time.sleep(6)  # mid-load: some of the first half done, some in flight
    run.pipeline.stop()
    run.produce(lines[150:])
    run.pipeline.start(processes=3)

    def settled() -> bool:
        return reconcile(run.settings, events, results_logs=run.pipeline.logs("results")).ok

    run.wait_for(settled, timeout_s=240, what="the conservation law after the rescale")
    final = reconcile(run.settings, events, results_logs=run.pipeline.logs("results"))
    assert final.attachments == final.media > 0
    assert final.dlq == {"events": 0, "enrichment": 0, "download": 0}

    # Each stage stopped gracefully (its last positions snapshotted), so none re-read anything.
    settings = run.settings
    copies = {
        name: Counter(key(message) for message in run.topic_messages(topic))
        for name, topic in (
            ("tasks", settings.claimx_enrichment_pending_topic),
            ("downloads", settings.claimx_downloads_pending_topic),
            ("cached", settings.claimx_downloads_cached_topic),
            ("results", settings.claimx_downloads_results_topic),
        )
    }
    assert {name: c.most_common(1)[0][1] for name, c in copies.items()} == dict.fromkeys(copies, 1)
    assert sum(copies["tasks"].values()) == len(events)
    assert sum(copies["results"].values()) == sum(copies["downloads"].values())


def key(message: Any) -> str:
    """What makes a message on an inter-stage topic itself: its event and, for files, media."""
    body = load(message.value())
    return f"{body.get('event_id') or body.get('source_event_id')}/{body.get('media_id')}"
