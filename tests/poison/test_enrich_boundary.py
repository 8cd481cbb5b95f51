"""The API-answer boundary: hostile ClaimX answers through a real enrich process.

Hypothesis draws a plan: simulator projects, their enrichment tasks, and hostile answers for
some projects, media lists, media items and links, task assignments and video reports (the
simulator's hostile mode). The tasks are produced to ``claimx.enrichment.pending``,
``python -m bytewax.run dataflows.enrich`` drains it once over real HTTP, and then every
task must be where its plan says: a good task's rows in Delta (and, for a file, its download
task), a task whose answer is unusable in the enrichment DLQ or a retry tier with a reason
and none of its rows, an odd one in exactly one of those; and the process ended with 0.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator.hostile import AnswerPoison, UrlPoison
from claimx_flow.models import DownloadTask, EnrichmentTask
from tests.isolation import isolated_settings
from tests.poison.checks import Findings, no_duplicates
from tests.poison.harness import (
    RawRecord,
    Read,
    StageExit,
    poison_settings,
    produce_exact,
    read_topic,
    read_topics,
    run_stage_process,
    runs_within,
    table,
    unreadable_timestamps,
)
from tests.poison.hostile_plans import (
    MediaCase,
    PlannedTask,
    ProjectCase,
    hostility,
    planned_tasks,
    project_cases,
    unfit_beside_contactless,
)

PROJECTS = 5
"""Projects per run: about 35 tasks (an MFN, an invitation, 1-3 files, a task, a video each)."""
ENTITY_TABLES = (
    ("claimx_projects", "project_id"),
    ("claimx_media", "media_id"),
    ("claimx_tasks", "assignment_id"),
    ("claimx_video_collab", "video_collaboration_id"),
)


def enrich_settings(
    kafka_bootstrap: str, sim: RunningSimulator, data_dir: Path, **overrides: Any
) -> Settings:
    """Isolated topics and tables; one API retry, and a breaker that does not open: this
    property is about each task alone (the breaker sending good tasks to a retry tier after
    a run of transient answers is by design, and tested elsewhere)."""
    return isolated_settings(
        kafka_bootstrap,
        data_dir,
        sim=sim,
        claimx_api_max_retries=1,
        claimx_api_breaker_failures=100_000,
        **overrides,
    )


def produce_tasks(settings: Settings, planned: list[PlannedTask]) -> None:
    records = [RawRecord(p.task.to_json(), p.task.kafka_key) for p in planned]
    produce_exact(settings, settings.claimx_enrichment_pending_topic, records)


def failures_by_event(reads: list[Read]) -> dict[str, list[Read]]:
    found: dict[str, list[Read]] = defaultdict(list)
    for read in reads:
        found[EnrichmentTask.from_json(read.value).event_id].append(read)
    return found


def _own(row: dict[str, Any], task: EnrichmentTask, key: str) -> bool:
    """A row the task wrote: it names the task's event, or has the task's id as its key (an
    answer may carry another id than the event: the row is the task's all the same)."""
    ids = {
        "media_id": task.media_id,
        "assignment_id": task.task_assignment_id,
        "video_collaboration_id": task.video_collaboration_id,
    }
    return bool(row.get("event_id") == task.event_id or row.get(key) == ids[key])


def landed(
    planned: PlannedTask, tables: dict[str, list[dict[str, Any]]], downloads: Counter[str]
) -> list[str]:
    """The task's own outputs found in Delta and the downloads topic (empty: none)."""
    task = planned.task
    kind, found = task.event_type, []
    if kind == "PROJECT_MFN_ADDED":
        found += [
            "claimx_projects.master_file_name"
            for row in tables["claimx_projects"]
            if row["project_id"] == task.project_id
            and row["master_file_name"] == task.master_file_name
        ]
    elif kind == "POLICYHOLDER_INVITED":
        found += [
            "claimx_projects.policyholder_invited_at"
            for row in tables["claimx_projects"]
            if row["project_id"] == task.project_id and row["policyholder_invited_at"]
        ]
    elif kind == "PROJECT_FILE_ADDED":
        media = tables["claimx_media"]
        found += ["claimx_media" for row in media if _own(row, task, "media_id")]
        found += ["downloads.pending"] * downloads[task.media_id or ""]
    elif kind == "CUSTOM_TASK_ASSIGNED":
        tasks = tables["claimx_tasks"]
        found += ["claimx_tasks" for row in tasks if _own(row, task, "assignment_id")]
    else:
        videos = tables["claimx_video_collab"]
        found += [
            "claimx_video_collab" for row in videos if _own(row, task, "video_collaboration_id")
        ]
    return found


def check_enrich(
    settings: Settings, planned: list[PlannedTask], exit: StageExit, findings: Findings
) -> list[DownloadTask]:
    """The enrich stage's part of the law; returns the download tasks it wrote."""
    findings.stage_ran(exit)
    for name, _ in ENTITY_TABLES:
        for where in unreadable_timestamps(settings, name):
            findings.add(
                f"{name} holds an instant no Python datetime can (year 0 or 10000): {where}"
            )
    tables = {name: table(settings, name, lenient=True) for name, _ in ENTITY_TABLES}
    for name, key in ENTITY_TABLES:
        no_duplicates(findings, name, [row[key] for row in tables[name]])
    contacts = table(settings, "claimx_contacts")
    no_duplicates(
        findings,
        "claimx_contacts",
        [(r["project_id"], r["contact_email"], r["contact_type"]) for r in contacts],
    )
    downloads = [
        DownloadTask.from_json(r.value)
        for r in read_topic(settings, settings.claimx_downloads_pending_topic)
    ]
    per_media = Counter(d.media_id for d in downloads)
    tiers = read_topics(settings, settings.enrichment_retry_topics)
    dead = read_topic(settings, settings.claimx_enrichment_dlq_topic)
    failed = failures_by_event([*dead, *tiers])
    for plan in planned:
        task = plan.task
        outputs = sorted(set(landed(plan, tables, per_media)))
        letters = failed.pop(task.event_id, [])
        where = [
            f"{r.topic.rsplit('.', 2)[-1]}: {r.header('claimx.error_message')}" for r in letters
        ]
        findings.saw(
            f"{task.event_type[:12]} {plan.why.split('#')[0] if plan.why != 'good' else 'good'}",
            "landed" if outputs else "/".join(r.topic[-8:] for r in letters) or "nowhere",
        )
        if task.event_type == "PROJECT_FILE_ADDED" and outputs and len(outputs) != 2:
            findings.add(f"{plan.describe()}: only part of a file event landed: {outputs}")
        if len(letters) > 1:
            findings.add(f"{plan.describe()}: failed {len(letters)} times: {where}")
        for letter in letters:
            info = letter.failure()
            if info is None or not info.error_message.strip():
                findings.add(f"{plan.describe()}: a failure without a reason in {letter.topic}")
        if outputs and letters:
            findings.add(f"{plan.describe()}: both landed {outputs} and failed {where}")
        elif not outputs and not letters:
            findings.add(f"{plan.describe()}: neither landed nor in a DLQ or retry tier")
        elif plan.expect == "land" and letters:
            findings.add(f"{plan.describe()}: a good task failed: {where}")
        elif plan.expect == "fail" and outputs:
            findings.add(f"{plan.describe()}: poisoned task landed {outputs}")
        if task.event_type == "PROJECT_FILE_ADDED" and per_media[task.media_id or ""] > 1:
            findings.add(f"{plan.describe()}: {per_media[task.media_id or '']} download tasks")
    for event_id, strays in failed.items():
        findings.add(f"{len(strays)} failure record(s) for unknown event {event_id}")
    return downloads


def describe_cases(cases: list[ProjectCase]) -> str:
    def kind(poison: Any) -> str:
        return f"{poison.kind}#{poison.variant}" if poison else "-"

    return "; ".join(
        f"{c.project_id}: project={kind(c.project)} list={kind(c.media_list)} "
        f"task={kind(c.assignment)} video={kind(c.video)} media="
        + ",".join(f"{m.media_id}[{kind(m.item)}/{kind(m.url)}/{kind(m.body)}]" for m in c.media)
        for c in cases
    )


def served_hostile(sim: RunningSimulator) -> int:
    return sum(n for kind, n in sim.stats.faults.items() if kind.startswith("hostile:"))


EDGE_RETRY_AFTERS = [
    "01 Jan 99999999999999999999 00:00:00 GMT",  # a year past any datetime
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "1e309",
]
RETRY_AFTERS = st.lists(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60), max_size=5
).map(lambda texts: [*texts, *EDGE_RETRY_AFTERS])
"""A gateway's ``Retry-After`` on the API's answers, 200s included, one text after another:
any printable text (a header can hold no other), with the edges a date parser meets always
among them; read or not, none may fail an answer."""


@runs_within(150)
@poison_settings
@given(cases=project_cases(PROJECTS), retry_afters=RETRY_AFTERS)
def test_every_enrichment_task_lands_or_fails_alone_whatever_the_api_answers(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path_factory: pytest.TempPathFactory,
    cases: list[ProjectCase],
    retry_afters: list[str],
) -> None:
    tmp = tmp_path_factory.mktemp("enrich-poison")
    settings = enrich_settings(kafka_bootstrap, sim, tmp / "data")
    sim.reset()
    sim.set_faults(hostile=hostility(cases), retry_after_texts=retry_afters)
    planned = planned_tasks(cases)
    produce_tasks(settings, planned)
    exit = run_stage_process(settings, "enrich", tmp / "logs", timeout_s=150)
    findings = Findings(f"enrich boundary [{describe_cases(cases)}]")
    check_enrich(settings, planned, exit, findings)
    if not hostility(cases).empty and not served_hostile(sim):
        findings.add("the simulator served no hostile answer: the plan did not take effect")
    findings.check()


@runs_within(150)
@poison_settings
@given(cases=unfit_beside_contactless(), order=st.randoms(use_true_random=False))
def test_an_unfit_project_fails_alone_beside_projects_without_contacts(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path_factory: pytest.TempPathFactory,
    cases: list[ProjectCase],
    order: random.Random,
) -> None:
    """A batch where no project but the unfit one has a contact, its tasks in any order. Found
    in review with a canned API: dropping the unfit project's rows from the contacts table,
    left with no rows, raised and failed the whole batch instead of that project's tasks."""
    tmp = tmp_path_factory.mktemp("enrich-contactless")
    settings = enrich_settings(kafka_bootstrap, sim, tmp / "data")
    sim.reset()
    sim.set_faults(hostile=hostility(cases))
    planned = planned_tasks(cases)
    order.shuffle(planned)
    produce_tasks(settings, planned)
    exit = run_stage_process(settings, "enrich", tmp / "logs", timeout_s=150)
    findings = Findings(f"enrich beside contactless projects [{describe_cases(cases)}]")
    check_enrich(settings, planned, exit, findings)
    contacts = {row["project_id"] for row in table(settings, "claimx_contacts")}
    if contacts:
        findings.add(f"contacts stored for projects answered without any: {sorted(contacts)}")
    findings.check()


# What the properties found, kept as fixed examples ----------------------------------------------


def run_cases(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp: Path,
    cases: list[ProjectCase],
    files_first: bool = False,
) -> tuple[Findings, list[dict[str, Any]]]:
    settings = enrich_settings(kafka_bootstrap, sim, tmp / "data")
    sim.set_faults(hostile=hostility(cases))
    planned = planned_tasks(cases)
    if files_first:  # a project's first message is the one its project rows travelled with
        planned.sort(key=lambda p: p.task.event_type != "PROJECT_FILE_ADDED")
    produce_tasks(settings, planned)
    exit = run_stage_process(settings, "enrich", tmp / "logs", timeout_s=150)
    findings = Findings(f"enrich boundary [{describe_cases(cases)}]")
    check_enrich(settings, planned, exit, findings)
    return findings, table(settings, "claimx_video_collab", lenient=True)


@pytest.mark.parametrize(
    ("project_id", "variant", "where"),
    [
        ("7000000", 4, "a team member's userName (not the primary contact)"),
        ("7000001", 12, "a customer e-mail (not the primary one)"),
    ],
)
def test_an_unencodable_contact_fails_every_task_of_its_project_and_lands_none(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path: Path,
    project_id: str,
    variant: int,
    where: str,
) -> None:
    """The project answer is fine but for ``"\\ud800"`` in ``where``. Found failing: the
    contact or project row carrying it was refused at the Delta commit and dead-lettered the
    batch's first message of the project, a PROJECT_FILE_ADDED whose media row and download
    task had already landed (both in Delta and in the DLQ; its file uploaded and
    dead-lettered), while the project's other tasks landed without the contact."""
    case = ProjectCase(
        project_id,
        project=AnswerPoison(kind="lone_surrogates", variant=variant),
        media=[MediaCase(f"{project_id}001")],
        assignment_id=f"{project_id}001",
    )
    findings, _ = run_cases(kafka_bootstrap, sim, tmp_path, [case], files_first=True)
    findings.check()


def test_an_answer_whose_id_is_a_boolean_is_not_stored_under_true(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    """Two projects' video reports answer ``"videoCollaborationId": true`` (``wrong_types``
    variants 53 and 37). Found failing: the id was read as text (``str(True)``), both tasks
    landed as a row keyed ``"True"``, and the second MERGE overwrote the first: one project's
    video collaboration lost with nothing in any DLQ."""
    cases = [
        ProjectCase(
            pid,
            media=[MediaCase(f"{pid}001")],
            assignment_id=f"{pid}001",
            video=AnswerPoison(kind="wrong_types", variant=variant),
        )
        for pid, variant in (("7000003", 53), ("7000004", 37))
    ]
    findings, videos = run_cases(kafka_bootstrap, sim, tmp_path, cases)
    keys = sorted(str(row["video_collaboration_id"]) for row in videos)
    if "True" in keys:
        findings.add(f"video rows keyed {keys}: a boolean id was stored as the text 'True'")
    findings.check()


@pytest.mark.parametrize(
    ("project_id", "variant", "value"),
    [
        ("7000010", 16, "createdDate 9999-12-31T23:59:59-12:00"),
        ("7000011", 2, "dateInspected, appointmentDate 0001-01-01T00:00:00+14:00"),
    ],
)
def test_an_instant_outside_the_calendar_in_utc_is_refused_not_stored(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path: Path,
    project_id: str,
    variant: int,
    value: str,
) -> None:
    """The project answer holds ``value`` (``edge_values``). Found failing: the raw-event
    parser refuses such a time, the row builder took it, and the project row was stored with
    an instant in year 10000 (or year 0) UTC, which Arrow and Delta hold but no Python
    datetime can: ``claimx_projects`` could no longer be read with ``to_pylist``
    (``OverflowError``), which stopped ``reconcile`` and every Python reader of the table."""
    case = ProjectCase(
        project_id,
        project=AnswerPoison(kind="edge_values", variant=variant),
        media=[MediaCase(f"{project_id}001")],
        assignment_id=f"{project_id}001",
    )
    findings, _ = run_cases(kafka_bootstrap, sim, tmp_path, [case])
    findings.check()


def test_a_link_too_large_for_any_message_fails_its_file_event_alone(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A media item's link of 1.5 MB of text no codec shrinks, inside an answer well under
    the API's size cap. Found failing: the download task made from it passed the broker's
    ``max.message.bytes``, its send failed at the epoch's snapshot, and every replay asked the
    API again and failed again: enrich stopped for good. Now that file event alone is
    dead-lettered, and the project's other tasks land."""
    pid = "7000020"
    case = ProjectCase(
        pid,
        media=[MediaCase(f"{pid}001", url=UrlPoison(kind="huge")), MediaCase(f"{pid}002")],
        assignment_id=f"{pid}001",
    )
    settings = enrich_settings(kafka_bootstrap, sim, tmp_path / "data")
    sim.set_faults(hostile=hostility([case], huge_chars=1_500_000))
    planned = planned_tasks([case])
    produce_tasks(settings, planned)
    exit = run_stage_process(settings, "enrich", tmp_path / "logs", timeout_s=150)
    findings = Findings(f"enrich with a huge link [{describe_cases([case])}]")
    check_enrich(settings, planned, exit, findings)
    reasons = [
        r.header("claimx.error_message")
        for r in read_topic(settings, settings.claimx_enrichment_dlq_topic)
    ]
    if not any("DOWNLOAD_TASK_TOO_LARGE" in (reason or "") for reason in reasons):
        findings.add(f"the huge link's file event is not in the DLQ as too large: {reasons}")
    findings.check()
