"""End to end on real Kafka: media files the source answers 404 for end in the download DLQ and,
beside each DLQ copy, a failed result that the results stage counts — in its summary line (counts
and rates) and in ``claimx_results_files_total{status="failed"}`` scraped from its /metrics. The
DLQ copies count their attempts in the body (``retry_count``) as in the header; a replay once the
source is fixed restarts both at 0, the files land, and each success replaces its failure."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from claimx_flow.dlq.queues import DlqName
from claimx_flow.dlq.replay import ReplayOptions, replay
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.lab.simulator.hostile import Hostility
from claimx_flow.models import RawEvent, UploadResult
from tests.e2e.conftest import PipelineRun, header_map
from tests.simulator_fixtures import SIMULATOR_SEED

MEDIA_BYTES = 64 * 1024
FAILING = 4


def results_counter(run: PipelineRun) -> dict[str, float]:
    """``claimx_results_files_total`` by status, from the results stage's own /metrics."""
    (port,) = run.pipeline.health_ports["results"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "claimx_results_files":
            for sample in family.samples:
                if sample.name == "claimx_results_files_total":
                    counts[sample.labels["status"]] = sample.value
    return counts


def rates(completed: int, failed: int) -> str:
    total = completed + failed
    return f"({completed / total:.1%} success, {failed / total:.1%} failed)"


def test_dead_lettered_files_are_counted_as_failed_and_a_replay_replaces_them(
    pipeline_run: PipelineRun, sim: RunningSimulator
) -> None:
    run = pipeline_run
    lines = list(event_lines(EventPlan(count=200, projects=8, mix="mixed", seed=SIMULATOR_SEED)))
    events = [RawEvent.from_source(json.loads(line)) for _, line in lines]
    announced = [e for e in events if e.event_type == "PROJECT_FILE_ADDED" and e.media_id]
    files = {e.media_id: e for e in announced}
    once = Counter(e.media_id for e in announced)
    failing = sorted(m for m in files if once[m] == 1)[:FAILING]  # one task, one DLQ copy
    sim.set_faults(
        hostile=Hostility.model_validate(
            {"media_bodies": {media: {"kind": "not_found"} for media in failing}}
        )
    )
    run.produce(lines)
    run.pipeline.start()

    landed = len(files) - FAILING
    counts = f"results: {landed} completed, {FAILING} failed {rates(landed, FAILING)}"
    run.wait_for(
        lambda: (
            len(run.table("claimx_attachments")) == landed
            and len(run.topic_messages(run.settings.claimx_downloads_dlq_topic)) == FAILING
            and counts in run.last_summary()
        ),
        timeout_s=180,
        what=f"{landed} attachments, {FAILING} dead letters and the summary {counts!r}",
    )

    # Beside each DLQ copy, a failed result with the file's ids and the reason.
    results = [
        UploadResult.from_json(m.value())
        for m in run.topic_messages(run.settings.claimx_downloads_results_topic)
    ]
    failed = {r.media_id: r for r in results if r.status == "failed"}
    assert sorted(failed) == failing
    for media_id, result in failed.items():
        event = files[media_id]
        assert (result.project_id, result.source_event_id) == (event.project_id, event.event_id)
        assert result.error is not None and "404" in result.error
        assert (result.bytes, result.sha256, result.onelake_path) == (0, None, None)
    assert Counter(r.status for r in results)["completed"] >= landed

    # The DLQ copy's body counts the attempt as its header does (a 404 is final at once).
    letters = run.topic_messages(run.settings.claimx_downloads_dlq_topic)
    for letter in letters:
        headers = header_map(letter)
        assert headers["claimx.error_message"] == failed[headers["claimx.media_id"]].error
        assert json.loads(letter.value())["retry_count"] == int(headers["claimx.attempt"]) == 1

    # The results stage's own metrics say the same.
    run.wait_for(
        lambda: results_counter(run) == {"completed": landed, "failed": FAILING},
        timeout_s=30,
        what="claimx_results_files_total on the results stage's /metrics",
    )

    # The source is fixed; the DLQ is replayed: bodies and headers start counting at 0 again.
    sim.set_faults(hostile=Hostility())
    outcome = replay(run.settings, DlqName.DOWNLOAD, ReplayOptions())
    assert outcome.done.replayed == FAILING
    replayed = [
        m
        for m in run.topic_messages(run.settings.claimx_downloads_pending_topic)
        if "claimx.replayed_at" in header_map(m)
    ]
    assert len(replayed) == FAILING
    for message in replayed:
        assert json.loads(message.value())["retry_count"] == 0
        assert header_map(message)["claimx.attempt"] == "0"

    # Each success replaces its failure in the totals; the counter keeps the failures seen.
    every = f"results: {len(files)} completed, 0 failed {rates(len(files), 0)}"
    run.wait_for(
        lambda: len(run.table("claimx_attachments")) == len(files) and every in run.last_summary(),
        timeout_s=180,
        what=f"every file landed and the summary {every!r}",
    )
    assert results_counter(run) == {"completed": len(files), "failed": FAILING}
    assert len(run.topic_messages(run.settings.claimx_downloads_dlq_topic)) == FAILING
