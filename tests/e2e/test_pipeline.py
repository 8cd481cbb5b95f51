"""End to end: generated events through all five stages; every row, file and result where it
belongs, and a replay of the same workload adds nothing."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.lab.reconcile import reconcile
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.media.cache_runs import cached_files
from claimx_flow.models import DownloadTask, RawEvent
from claimx_flow.storage import media_path
from tests.e2e.conftest import PipelineRun, header_map
from tests.simulator_fixtures import SIMULATOR_SEED

MEDIA_BYTES = 64 * 1024


@pytest.mark.parametrize("workers", [1, 2])
def test_events_flow_to_every_table_file_and_result(
    pipeline_run: PipelineRun, sim: RunningSimulator, workers: int
) -> None:
    run = pipeline_run
    lines = list(event_lines(EventPlan(count=300, projects=12, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    media = {e.media_id: e.project_id for e in events if e.event_type == "PROJECT_FILE_ADDED"}
    run.produce(lines)
    run.pipeline.start(workers=workers)

    run.wait_for(
        lambda: reconcile(run.settings, events, results_logs=run.pipeline.logs("results")).ok,
        timeout_s=180,
        what=f"{len(media)} attachments, {len(events)} events and their projects",
    )
    first_calls = sim.stats.api_calls
    check_outcome(run, events, media)
    # Each event row keeps the event exactly as it was produced (the first of a duplicate).
    sent: dict[str, str] = {}
    for event, (_, line) in zip(events, lines, strict=True):
        sent.setdefault(event.event_id, line)
    assert {r["event_id"]: r["raw_data"] for r in run.table("claimx_events")} == sent

    # Replay: the same workload again changes no table and adds no file.
    run.produce(lines)
    run.wait_for(
        lambda: (
            len(run.topic_messages(run.settings.claimx_downloads_results_topic)) >= 2 * len(media)
            and not cached_files(run.settings.effective_cache_dir)  # released after its result
        ),
        timeout_s=180,
        what="the replayed workload's results and its cache released",
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
    assert cached_files(run.settings.effective_cache_dir) == []  # cache released

    for dlq in (
        run.settings.claimx_events_dlq_topic,
        run.settings.claimx_enrichment_dlq_topic,
        run.settings.claimx_downloads_dlq_topic,
    ):
        dead = run.topic_messages(dlq)
        assert dead == [], [header_map(m) for m in dead[:3]]
    results = run.topic_messages(run.settings.claimx_downloads_results_topic)
    assert {json.loads(m.value())["media_id"] for m in results} == set(media)
    # The results stage counts each file once, however often its result arrives.
    expected = (
        f"results: {len(media)} completed, 0 failed (100.0% success, 0.0% failed), "
        f"{len(media) * MEDIA_BYTES} bytes"
    )
    run.wait_for(lambda: expected in run.last_summary(), 30, f"summary {expected!r}")


def test_bad_input_ends_in_a_dlq_with_its_reason_and_the_counts_add_up(
    pipeline_run: PipelineRun, sim: RunningSimulator
) -> None:
    run = pipeline_run
    lines = list(event_lines(EventPlan(count=200, projects=8, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    missing_project = events[0].project_id
    sim.set_faults(not_found_projects=[missing_project])
    malformed: list[tuple[str, str | bytes]] = [
        ("k", b"{not json"),
        ("k", b"\xff\xfe invalid utf-8"),
        ("k", b"[1, 2, 3]"),
        ("k", json.dumps({"eventType": "PROJECT_CREATED", "projectId": 5}).encode()),
        (
            "k",
            json.dumps(
                {
                    "event_type": "PROJECT_CREATED",
                    "project_id": True,
                    "ingested_at": "2024-01-01T00:00:00Z",
                }
            ).encode(),
        ),
    ]
    unknown = [
        json.dumps(
            {
                "event_type": "SOMETHING_NEW",
                "project_id": str(9000 + i),
                "ingested_at": "2024-01-01T00:00:00Z",
            }
        )
        for i in range(3)
    ]
    run.produce(lines + malformed + [("u", line) for line in unknown])
    bad_host = DownloadTask(
        media_id="31337",
        project_id=events[1].project_id,
        download_url="https://evil.example/steal.jpg",
        file_name="steal.jpg",
        file_type="jpg",
        source_event_id="injected",
    )
    producer_lines = [(bad_host.kafka_key, bad_host.to_json())]
    run.produce_to(run.settings.claimx_downloads_pending_topic, producer_lines)

    valid = events + [RawEvent.from_source(json.loads(line)) for line in unknown]
    needs_api = [e for e in events if e.event_type != "PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL"]
    enrichment_failures = [e for e in needs_api if e.project_id == missing_project]
    expected_enrichment_dlq = len(enrichment_failures) + len(unknown)
    media = {
        e.media_id: e.project_id
        for e in events
        if e.event_type == "PROJECT_FILE_ADDED" and e.project_id != missing_project
    }
    run.pipeline.start()
    run.wait_for(
        lambda: (
            len(run.table("claimx_attachments")) >= len(media)
            and len(run.topic_messages(run.settings.claimx_enrichment_dlq_topic))
            >= expected_enrichment_dlq
        ),
        timeout_s=180,
        what="attachments and enrichment failures",
    )

    # Every raw event is in claimx_events or the events DLQ, and nowhere twice.
    events_dlq = run.topic_messages(run.settings.claimx_events_dlq_topic)
    assert len(events_dlq) == len(malformed)
    assert {header_map(m)["claimx.error_category"] for m in events_dlq} == {"permanent"}
    reasons = sorted(header_map(m)["claimx.error_message"] for m in events_dlq)
    assert any("invalid JSON" in r for r in reasons)
    assert any("missing field ingested_at" in r for r in reasons)
    assert any("project_id" in r for r in reasons)
    assert {m.value() for m in events_dlq} == {line for _, line in malformed}  # unchanged
    assert len(run.table("claimx_events")) == len({e.event_id for e in valid})

    # Every task is enriched or in the enrichment DLQ with its reason.
    enrichment_dlq = run.topic_messages(run.settings.claimx_enrichment_dlq_topic)
    assert len(enrichment_dlq) == expected_enrichment_dlq
    by_reason = Counter(header_map(m)["claimx.error_message"].split(":")[0] for m in enrichment_dlq)
    assert by_reason["UNKNOWN_EVENT_TYPE"] == len(unknown)
    failed_ids = {header_map(m)["claimx.event_id"] for m in enrichment_dlq}
    assert {e.event_id for e in enrichment_failures} <= failed_ids
    for message in enrichment_dlq:
        headers = header_map(message)
        assert headers["claimx.stage"] == "enrich"
        assert headers["claimx.original_topic"] == run.settings.claimx_enrichment_pending_topic
        assert headers["claimx.error_category"] == "permanent"

    # Every media file is uploaded or in the download DLQ.
    downloads_dlq = run.topic_messages(run.settings.claimx_downloads_dlq_topic)
    assert len(downloads_dlq) == 1
    assert "not in the allowlist" in header_map(downloads_dlq[0])["claimx.error_message"]
    assert header_map(downloads_dlq[0])["claimx.media_id"] == "31337"
    assert sorted(r["media_id"] for r in run.table("claimx_attachments")) == sorted(media)

    # And each stage said so in its log, in words the runbook's troubleshooting greps for.
    said = {stage: (run.pipeline.log_dir / f"{stage}.log").read_text() for stage in STAGE_NAMES}
    assert "enrich: API error (ClaimXApiError, permanent) → DLQ" in said["enrich"]
    assert "ingest: event failed" in said["ingest"]
    assert "download: download failed" in said["download"]
