"""End to end: generated events through all five stages; every row, file and result where it
belongs, and a replay of the same workload adds nothing."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from claimx_flow.models import RawEvent
from claimx_flow.simulator import RunningSimulator
from claimx_flow.simulator import data as sim_data
from claimx_flow.simulator.events import EventPlan, event_lines
from claimx_flow.storage import media_path
from tests.e2e.conftest import PipelineRun, header_map
from tests.simulator_fixtures import SIMULATOR_SEED

MEDIA_BYTES = 64 * 1024


def test_events_flow_to_every_table_file_and_result(
    pipeline_run: PipelineRun, sim: RunningSimulator
) -> None:
    run = pipeline_run
    lines = list(event_lines(EventPlan(count=300, projects=12, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    media = {e.media_id: e.project_id for e in events if e.event_type == "PROJECT_FILE_ADDED"}
    run.produce(lines)
    run.pipeline.start()

    run.wait_for(
        lambda: (
            len(run.table("claimx_attachments")) >= len(media)
            and len(run.table("claimx_events")) >= len({e.event_id for e in events})
        ),
        timeout_s=180,
        what=f"{len(media)} attachments and {len(events)} events",
    )
    first_calls = sim.stats.api_calls
    check_outcome(run, events, media)

    # Replay: the same workload again changes no table and adds no file.
    run.produce(lines)
    run.wait_for(
        lambda: (
            len(run.topic_messages(run.settings.claimx_downloads_results_topic)) >= 2 * len(media)
        ),
        timeout_s=180,
        what="the replayed workload's results",
    )
    check_outcome(run, events, media)
    assert sim.stats.api_calls > first_calls  # the replay really went through enrichment


def check_outcome(run: PipelineRun, events: list[RawEvent], media: dict[str | None, str]) -> None:
    rows = run.table("claimx_events")
    assert Counter(r["event_id"] for r in rows) == Counter({e.event_id for e in events})

    projects = {r["project_id"] for r in run.table("claimx_projects")}
    assert projects == {e.project_id for e in events}
    assert len(run.table("claimx_projects")) == len(projects)

    media_rows = run.table("claimx_media")
    assert sorted(r["media_id"] for r in media_rows) == sorted(media)

    attachments = {r["media_id"]: r for r in run.table("claimx_attachments")}
    assert len(attachments) == len(run.table("claimx_attachments")) == len(media)
    files_root = run.settings.files_dir
    for media_id, project_id in media.items():
        assert media_id is not None
        expected = sim_data.media_content(SIMULATOR_SEED, int(media_id), MEDIA_BYTES)
        row = attachments[media_id]
        assert row["project_id"] == project_id
        assert row["bytes"] == len(expected)
        assert row["sha256"] == hashlib.sha256(expected).hexdigest()
        stored = files_root / media_path(project_id, media_id, row["file_name"], row["file_type"])
        assert stored.read_bytes() == expected
    stored_files = [p for p in files_root.rglob("*") if p.is_file()]
    assert len(stored_files) == len(media)
    assert list(run.settings.effective_cache_dir.glob("*")) == []  # cache released

    for dlq in (
        run.settings.claimx_events_dlq_topic,
        run.settings.claimx_enrichment_dlq_topic,
        run.settings.claimx_downloads_dlq_topic,
    ):
        dead = run.topic_messages(dlq)
        assert dead == [], [header_map(m) for m in dead[:3]]
    results = run.topic_messages(run.settings.claimx_downloads_results_topic)
    assert {json.loads(m.value())["media_id"] for m in results} == set(media)
