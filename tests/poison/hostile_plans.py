"""Which projects, task assignments and media the simulator answers with poison, and what the
pipeline must then do with each enrichment task.

A plan is drawn by hypothesis: a handful of simulator projects, for each the tasks to enrich
(an MFN, a policyholder invitation, a few file events, a task assignment, a video report) and,
for some, a hostile answer from ``claimx_flow.lab.simulator.hostile``. Each task then has an
*expectation*: ``land`` (nothing it needs was poisoned), ``fail`` (an answer it needs cannot be
used: it must be in the enrichment DLQ or a retry tier with a reason, with none of its rows
written) or ``one`` (an odd answer the pipeline may accept or refuse: either, never both).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from hypothesis import strategies as st

from claimx_flow.lab.simulator import data
from claimx_flow.lab.simulator.hostile import (
    ANSWER_KINDS,
    BODY_KINDS,
    HONEST_BODIES,
    HONEST_KINDS,
    ITEM_KINDS,
    URL_KINDS,
    AnswerPoison,
    BodyPoison,
    Hostility,
    ItemPoison,
    UrlPoison,
)
from claimx_flow.models import EnrichmentTask
from tests.simulator_fixtures import SIMULATOR_SEED

Expect = Literal["land", "fail", "one"]

UNUSABLE = {
    "truncated_json",
    "html",
    "deep_nesting",
    "empty_body",
    "not_an_object",
    "empty_keys",
    "lone_surrogates",
}
"""Answers a task cannot be enriched from: every task that needs one must fail."""
TRANSIENT = {"truncated_json", "html", "empty_body"}
"""Of those, the ones that are the API's passing trouble (retry tiers), not the data's."""
IN_ONE_ITEM = {"lone_surrogates"}
"""In a media list several tasks share, an unencodable value sits in one item: that item's
task fails, the others may land. (In a project answer it fails every task of the project:
its rows are built once, for all of them.)"""

BAD_URLS = set(URL_KINDS) - {"look_alike_host", "control_characters"}
"""Links that must never be fetched (the others may normalise to the good link)."""
BAD_BODIES = set(BODY_KINDS) - {"empty", "html", "overlong", *HONEST_BODIES}
"""Media answers no file may be made of (the others are complete, if odd, files)."""
FIRST_PROJECT = 7_000_000
EPOCH = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass
class MediaCase:
    media_id: str
    item: ItemPoison | None = None
    url: UrlPoison | None = None
    body: BodyPoison | None = None


@dataclass
class ProjectCase:
    project_id: str
    project: AnswerPoison | None = None
    media_list: AnswerPoison | None = None
    media: list[MediaCase] = field(default_factory=list)
    assignment_id: str = ""
    assignment: AnswerPoison | None = None
    video: AnswerPoison | None = None


@dataclass(frozen=True)
class PlannedTask:
    task: EnrichmentTask
    expect: Expect
    why: str
    case: ProjectCase
    media: MediaCase | None = None

    def describe(self) -> str:
        return f"{self.task.event_type} p={self.task.project_id} ({self.why})"


def _answer(kinds: tuple[str, ...] = ANSWER_KINDS) -> st.SearchStrategy[AnswerPoison]:
    return st.builds(AnswerPoison, kind=st.sampled_from(kinds), variant=st.integers(0, 10**6))


def _maybe(strategy: st.SearchStrategy[Any], share: float) -> st.SearchStrategy[Any]:
    """``strategy`` about ``share`` of the time, else None."""
    weight = max(1, round(share * 20))
    return st.one_of(*([strategy] * weight), *([st.none()] * (20 - weight)))


@st.composite
def media_cases(draw: st.DrawFn, project_id: int, files: int, bodies: bool) -> list[MediaCase]:
    ids = data.media_ids(SIMULATOR_SEED, project_id)
    chosen = draw(st.lists(st.sampled_from(ids), min_size=files, max_size=files, unique=True))
    items = st.builds(ItemPoison, kind=st.sampled_from(ITEM_KINDS), variant=st.integers(0, 10**6))
    urls = st.builds(UrlPoison, kind=st.sampled_from(URL_KINDS), variant=st.integers(0, 10**6))
    body = st.builds(BodyPoison, kind=st.sampled_from(BODY_KINDS), variant=st.integers(0, 10**6))
    return [
        MediaCase(
            str(media_id),
            item=draw(_maybe(items, 0.15)),
            url=draw(_maybe(urls, 0.3 if bodies else 0.2)),
            body=draw(_maybe(body, 0.3)) if bodies else None,
        )
        for media_id in chosen
    ]


@st.composite
def project_cases(
    draw: st.DrawFn, projects: int, max_files: int = 3, bodies: bool = False
) -> list[ProjectCase]:
    """``projects`` distinct simulator projects, some with hostile answers."""
    ids = draw(
        st.lists(
            st.integers(FIRST_PROJECT, FIRST_PROJECT + 99_999),
            min_size=projects,
            max_size=projects,
            unique=True,
        )
    )
    cases = []
    for project_id in ids:
        files = draw(st.integers(1, max_files))
        cases.append(
            ProjectCase(
                str(project_id),
                project=draw(_maybe(_answer((*ANSWER_KINDS, *HONEST_KINDS)), 0.3)),
                media_list=draw(_maybe(_answer(), 0.1)),
                media=draw(media_cases(project_id, files, bodies)),
                assignment_id=str(data.task_assignment_ids(SIMULATOR_SEED, project_id)[0]),
                assignment=draw(_maybe(_answer(), 0.25)),
                video=draw(_maybe(_answer(), 0.25)),
            )
        )
    return cases


@st.composite
def unfit_beside_contactless(draw: st.DrawFn) -> list[ProjectCase]:
    """One project whose answer holds a lone surrogate in a stored text (so it cannot be
    stored), beside one to three projects answered without contacts; no other poison."""
    ids = draw(
        st.lists(
            st.integers(FIRST_PROJECT, FIRST_PROJECT + 99_999), min_size=2, max_size=4, unique=True
        )
    )
    unfit = draw(st.sampled_from(ids))
    cases = []
    for project_id in ids:
        media = data.media_ids(SIMULATOR_SEED, project_id)
        chosen = draw(st.lists(st.sampled_from(media), min_size=1, max_size=2, unique=True))
        kind = "lone_surrogates" if project_id == unfit else "no_contacts"
        cases.append(
            ProjectCase(
                str(project_id),
                project=AnswerPoison(kind=kind, variant=draw(st.integers(0, 10**6))),  # type: ignore[arg-type]
                media=[MediaCase(str(media_id)) for media_id in chosen],
                assignment_id=str(data.task_assignment_ids(SIMULATOR_SEED, project_id)[0]),
            )
        )
    return cases


def hostility(cases: list[ProjectCase], huge_chars: int = 50_000) -> Hostility:
    """The simulator's hostile mode for these cases."""
    return Hostility(
        projects={c.project_id: c.project for c in cases if c.project},
        media_lists={c.project_id: c.media_list for c in cases if c.media_list},
        media_items={m.media_id: m.item for c in cases for m in c.media if m.item},
        media_urls={m.media_id: m.url for c in cases for m in c.media if m.url},
        media_bodies={m.media_id: m.body for c in cases for m in c.media if m.body},
        task_assignments={c.assignment_id: c.assignment for c in cases if c.assignment},
        video_reports={c.project_id: c.video for c in cases if c.video},
        huge_chars=huge_chars,
    )


def _worst(*poisons: tuple[str, Any]) -> tuple[Expect, str]:
    """The expectation from the poisoned answers a task needs (name, poison or None)."""
    expect: Expect = "land"
    reasons = []
    for name, poison in poisons:
        if poison is None:
            continue
        reasons.append(f"{name}:{poison.kind}#{poison.variant}")
        if poison.kind in HONEST_KINDS:
            continue
        in_one_item = name == "media list" and poison.kind in IN_ONE_ITEM
        if poison.kind in UNUSABLE and not in_one_item:
            expect = "fail"
        elif expect == "land":
            expect = "one"
    return expect, ", ".join(reasons) or "good"


def planned_tasks(cases: list[ProjectCase]) -> list[PlannedTask]:
    """Each case's enrichment tasks with what must become of them."""
    planned = []
    for number, case in enumerate(cases):
        pid = case.project_id
        at = EPOCH.replace(minute=number % 60)  # the same for the whole case

        def task(
            event_type: str, *, pid: str = pid, at: datetime = at, **fields: Any
        ) -> EnrichmentTask:
            return EnrichmentTask(
                event_id=f"poison-{uuid.uuid4().hex}",
                event_type=event_type,
                project_id=pid,
                ingested_at=at,
                **fields,
            )

        project = ("project", case.project)
        expect, why = _worst(project)
        mfn = f"MFN-poison-{uuid.uuid4().hex[:8]}"
        planned.append(
            PlannedTask(task("PROJECT_MFN_ADDED", master_file_name=mfn), expect, why, case)
        )
        planned.append(PlannedTask(task("POLICYHOLDER_INVITED"), expect, why, case))
        broken_list = any(m.item and m.item.kind == "not_an_object" for m in case.media)
        for media in case.media:
            expect, why = _worst(project, ("media list", case.media_list), ("item", media.item))
            if media.url is not None and expect == "land":
                expect, why = "one", f"url:{media.url.kind}"
            if broken_list and expect == "land":  # a list with a non-object item is no list
                expect, why = "one", "another item of the list is not an object"
            planned.append(
                PlannedTask(
                    task("PROJECT_FILE_ADDED", media_id=media.media_id), expect, why, case, media
                )
            )
        expect, why = _worst(project, ("assignment", case.assignment))
        planned.append(
            PlannedTask(
                task("CUSTOM_TASK_ASSIGNED", task_assignment_id=case.assignment_id),
                expect,
                why,
                case,
            )
        )
        expect, why = _worst(project, ("video", case.video))
        video_id = str(data.video_collaboration_id(int(pid)))
        planned.append(
            PlannedTask(
                task("VIDEO_COLLABORATION_COMPLETED", video_collaboration_id=video_id),
                expect,
                why,
                case,
            )
        )
    return planned


CATALOGUE_FIRST = 7_400_000


def catalogue_cases() -> list[ProjectCase]:
    """Every media-link and media-body kind once, and the API answers that take the retry
    tiers (HTML, truncated JSON) or none (JSON nested too deep), on projects of their own: what
    the end-to-end run must always cover, whatever hypothesis draws beside it."""
    bodies, links = CATALOGUE_FIRST + 1, CATALOGUE_FIRST + 2
    body_media = data.media_ids(SIMULATOR_SEED, bodies)
    link_media = data.media_ids(SIMULATOR_SEED, links)
    return [
        ProjectCase(
            str(bodies),
            media=[
                MediaCase(str(media_id), body=BodyPoison(kind=kind))  # type: ignore[arg-type]
                for media_id, kind in zip(body_media, BODY_KINDS, strict=False)
            ],
            assignment_id=str(data.task_assignment_ids(SIMULATOR_SEED, bodies)[0]),
        ),
        ProjectCase(
            str(links),
            media=[
                MediaCase(str(media_id), url=UrlPoison(kind=kind))  # type: ignore[arg-type]
                for media_id, kind in zip(link_media, URL_KINDS, strict=False)
            ],
            assignment_id=str(data.task_assignment_ids(SIMULATOR_SEED, links)[0]),
        ),
        ProjectCase(
            str(CATALOGUE_FIRST + 3),
            project=AnswerPoison(kind="html"),
            media=[MediaCase(str(data.media_ids(SIMULATOR_SEED, CATALOGUE_FIRST + 3)[0]))],
            assignment_id=str(data.task_assignment_ids(SIMULATOR_SEED, CATALOGUE_FIRST + 3)[0]),
        ),
        ProjectCase(
            str(CATALOGUE_FIRST + 4),
            media=[MediaCase(str(data.media_ids(SIMULATOR_SEED, CATALOGUE_FIRST + 4)[0]))],
            assignment_id=str(data.task_assignment_ids(SIMULATOR_SEED, CATALOGUE_FIRST + 4)[0]),
            assignment=AnswerPoison(kind="truncated_json"),
            video=AnswerPoison(kind="deep_nesting"),
        ),
    ]
