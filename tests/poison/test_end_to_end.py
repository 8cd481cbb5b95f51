"""All the poison at once, through every stage as a real process.

One generated workload: good events for good projects (the simulator's ``mixed`` plan), raw
records that can never be events or that the parser decides on, and events about projects,
media, task assignments and video reports the simulator answers with poison (hostile answers,
invalid links, cut and compressed bodies). The six stages run as ``python -m bytewax.run``
processes with retry tiers of 1 and 2 seconds, so every transient failure reaches its DLQ
within the test. Once the pipeline settles, ``claimx_flow.lab.reconcile`` checks the law over
every accepted event (in ``claimx_events``; each file uploaded with its bytes or in a DLQ,
never both; no key twice; no cache file left; the results stage's count), and each poisoned
record is checked in the DLQ its plan names, with a reason; no stage may have exited.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.reconcile import reconcile
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.events import EventPlan, event_lines
from claimx_flow.lab.simulator.hostile import HONEST_BODIES
from claimx_flow.models import EnrichmentTask, RawEvent
from tests.isolation import isolated_settings
from tests.poison.checks import Findings
from tests.poison.harness import (
    RUNS,
    RawRecord,
    Read,
    poison_settings,
    produce_exact,
    read_topic,
    runs_within,
    table,
    unreadable_timestamps,
)
from tests.poison.hostile_plans import (
    BAD_BODIES,
    BAD_URLS,
    PlannedTask,
    ProjectCase,
    catalogue_cases,
    hostility,
    planned_tasks,
    project_cases,
)
from tests.poison.strategies import Generated, raw_records
from tests.poison.test_enrich_boundary import describe_cases
from tests.poison.test_ingest_boundary import ANY_TIME, verdict
from tests.simulator_fixtures import SIMULATOR_SEED
from tests.topic_config import set_topic_config

MEDIA_BYTES = 64 * 1024
GOOD_FIRST_PROJECT = 7_300_000
SETTLE_S = 180.0
UNREADABLE = "holds an instant no Python datetime can (year 0 or 10000)"


def e2e_settings(kafka_bootstrap: str, sim: RunningSimulator, tmp: Path) -> Settings:
    return isolated_settings(
        kafka_bootstrap,
        tmp / "data",
        sim=sim,
        cache_dir=tmp / "cache",
        retry_delays=[1, 2],
        max_retries=2,
        claimx_api_max_retries=1,
        claimx_api_breaker_failures=100_000,
        claimx_results_summary_seconds=1,
        download_timeout_seconds=10,
    )


def raw_event(task: EnrichmentTask) -> bytes:
    """The raw event a planned enrichment task comes from."""
    fields = task.model_dump(mode="json", exclude={"retry_count"}, exclude_none=True)
    return json.dumps(fields).encode()


def media_fate(plan: PlannedTask) -> str:
    """Where a file event's media must end: ``uploaded``, ``dead`` (a DLQ) or ``either``."""
    media = plan.media
    if plan.expect == "fail":
        return "dead"
    bad_url = media is not None and media.url is not None and media.url.kind in BAD_URLS
    bad_body = media is not None and media.body is not None and media.body.kind in BAD_BODIES
    odd_body = media is not None and media.body is not None and media.body.kind not in HONEST_BODIES
    if plan.expect == "land" and (bad_url or bad_body):
        return "dead"
    if plan.expect == "land" and media is not None and (media.url or odd_body):
        return "either"
    return "uploaded" if plan.expect == "land" else "either"


class Workload:
    def __init__(self, cases: list[ProjectCase], raw: list[Generated]) -> None:
        self.cases = cases
        self.raw = raw
        self.good = [
            RawEvent.from_source(json.loads(line))
            for _, line in event_lines(
                EventPlan(
                    count=40,
                    projects=4,
                    mix="mixed",
                    seed=SIMULATOR_SEED,
                    first_project_id=GOOD_FIRST_PROJECT,
                )
            )
        ]
        self.planned = planned_tasks(cases)

    def records(self) -> list[RawRecord]:
        good = [
            RawRecord(json.dumps(e.raw_data).encode(), e.project_id.encode()) for e in self.good
        ]
        hostile = [RawRecord(raw_event(p.task), p.task.kafka_key) for p in self.planned]
        mixed = [g.record for g in self.raw]
        return [*good, *hostile, *mixed]

    def accepted(self) -> list[RawEvent]:
        """Every record the parser takes, as an event."""
        events = [*self.good]
        events += [RawEvent.from_kafka(raw_event(p.task)) for p in self.planned]
        events += [
            RawEvent.from_kafka(g.record.value) for g in self.raw if verdict(g.record.value)[0]
        ]
        return events


def failure_ids(reads: list[Read], field: str) -> dict[str, list[Read]]:
    found: dict[str, list[Read]] = {}
    for read in reads:
        info = read.failure()
        key = getattr(info, field) if info else None
        if key:
            found.setdefault(key, []).append(read)
    return found


def check_workload(run: Pipeline, settings: Settings, work: Workload) -> Findings:
    findings = Findings(f"end to end [{describe_cases(work.cases)}]")
    dead = run.dead()
    if dead:
        findings.add(f"stages exited: {dead}")
    for name in TABLES:
        for where in unreadable_timestamps(settings, name):
            findings.add(
                f"{name} holds an instant no Python datetime can (year 0 or 10000): {where}"
            )
    try:
        report = reconcile(
            settings,
            work.accepted(),
            results_logs=run.logs("results"),
            expected_content={
                e.media_id: sim_data.media_content(SIMULATOR_SEED, int(e.media_id), MEDIA_BYTES)
                for e in work.good
                if e.media_id and e.event_type == "PROJECT_FILE_ADDED"
            },
        )
    except (OverflowError, ValueError) as exc:
        findings.add(f"reconcile cannot read the tables: {type(exc).__name__}: {exc}")
        return findings
    for problem in report.problems:
        findings.add(f"reconcile: {problem}")
    enrichment = failure_ids(read_topic(settings, settings.claimx_enrichment_dlq_topic), "event_id")
    downloads = failure_ids(read_topic(settings, settings.claimx_downloads_dlq_topic), "media_id")
    uploaded = {row["media_id"] for row in table(settings, "claimx_attachments", lenient=True)}
    for event in work.good:
        if event.event_id in enrichment:
            reason = enrichment[event.event_id][0].header("claimx.error_message")
            findings.add(f"good event {event.event_type} {event.event_id} dead-lettered: {reason}")
        if event.event_type == "PROJECT_FILE_ADDED" and event.media_id not in uploaded:
            findings.add(f"good media {event.media_id} not uploaded")
    for plan in work.planned:
        task = plan.task
        letters = enrichment.get(task.event_id, [])
        for letter in letters:
            if not (letter.header("claimx.error_message") or "").strip():
                findings.add(f"{plan.describe()}: dead-lettered without a reason")
        if plan.expect == "fail" and not letters:
            findings.add(f"{plan.describe()}: not in the enrichment DLQ")
        if plan.expect == "land" and letters:
            reason = letters[0].header("claimx.error_message")
            findings.add(f"{plan.describe()}: a good task dead-lettered: {reason}")
        if task.event_type != "PROJECT_FILE_ADDED" or task.media_id is None:
            continue
        fate = media_fate(plan)
        in_dlq = bool(letters) or task.media_id in downloads
        findings.saw(
            f"media {plan.why.split('#')[0]}", "uploaded" if task.media_id in uploaded else "dlq"
        )
        if fate == "uploaded" and task.media_id not in uploaded:
            findings.add(f"{plan.describe()}: media {task.media_id} not uploaded")
        if fate == "dead" and not in_dlq:
            findings.add(f"{plan.describe()}: media {task.media_id} in no DLQ")
        for letter in downloads.get(task.media_id, []):
            if not (letter.header("claimx.error_message") or "").strip():
                findings.add(f"{plan.describe()}: download DLQ record without a reason")
    letters = read_topic(settings, settings.claimx_events_dlq_topic)
    refused = [g for g in work.raw if verdict(g.record.value)[0] is None]
    if len(letters) != len(refused):
        findings.add(f"{len(letters)} events DLQ records for {len(refused)} refused raw records")
    for letter in letters:
        if not (letter.header("claimx.error_message") or "").strip():
            findings.add(f"events DLQ record at {letter.offset} without a reason")
    return findings


@runs_within(250)
@hypothesis_settings(poison_settings, max_examples=max(1, RUNS // 2))
@given(
    cases=project_cases(4, max_files=3, bodies=True),
    raw=st.lists(raw_records().filter(lambda g: g.intent != "good"), min_size=8, max_size=8),
)
def test_poison_and_good_records_through_every_stage(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path_factory: pytest.TempPathFactory,
    cases: list[ProjectCase],
    raw: list[Generated],
) -> None:
    tmp = tmp_path_factory.mktemp("e2e-poison")
    settings = e2e_settings(kafka_bootstrap, sim, tmp)
    cases = [*cases, *catalogue_cases()]
    sim.reset()
    sim.set_faults(hostile=hostility(cases))
    work = Workload(cases, raw)
    set_topic_config(
        settings, settings.claimx_events_topic, message_timestamp_after_max_ms=ANY_TIME
    )
    produce_exact(settings, settings.claimx_events_topic, work.records())
    run = Pipeline(settings, settings_env(settings), tmp / "logs")
    run.start()
    try:
        # Settled: the law holds for everything (transient failures need a few rounds of the
        # retry tiers first), or a stage exited, or the time is up.
        deadline = time.monotonic() + SETTLE_S
        findings = check_workload(run, settings, work)
        while findings.problems and not run.dead() and time.monotonic() < deadline:
            if any(UNREADABLE in problem for problem in findings.problems):
                break  # a row no reader can take stays so: waiting changes nothing
            time.sleep(5)
            findings = check_workload(run, settings, work)
        if findings.problems and time.monotonic() >= deadline:
            findings.add(f"not settled after {SETTLE_S:.0f}s")
        if findings.problems:
            for stage in ("ingest", "enrich", "download", "upload", "retry"):
                errors = [
                    line[:300]
                    for log in run.logs(stage)
                    for line in log.read_text(errors="replace").splitlines()
                    if " ERROR " in line or "Error:" in line
                ]
                if errors:
                    findings.add(f"{stage} log:\n      " + "\n      ".join(errors[-8:]))
    finally:
        run.stop()
    findings.check()
