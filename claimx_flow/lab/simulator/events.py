"""Raw ClaimX events (CLAIMX_DOMAIN.md §1) that refer to entities the simulator serves.

Producers in the wild mix snake_case and camelCase keys and send ids as numbers or strings, so
the generator does too, event by event. Lines are rendered by hand rather than by ``json.dumps``:
every value is a number, an id, an event type or a timestamp, none needing escapes, and this is
what keeps generation well above 100k events/s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from claimx_flow.lab.simulator import data

Mix = Literal["project-created", "file-heavy", "mixed"]
FIRST_PROJECT_ID = 5_000_000

# Event type → weight in the ``mixed`` mix; every type of §1.
MIXED_WEIGHTS: dict[str, int] = {
    "PROJECT_CREATED": 10,
    "PROJECT_MFN_ADDED": 5,
    "PROJECT_FILE_ADDED": 50,
    "CUSTOM_TASK_ASSIGNED": 8,
    "CUSTOM_TASK_COMPLETED": 6,
    "POLICYHOLDER_INVITED": 5,
    "POLICYHOLDER_JOINED": 4,
    "VIDEO_COLLABORATION_INVITE_SENT": 5,
    "VIDEO_COLLABORATION_COMPLETED": 4,
    "PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL": 3,
}
# One slot per unit of weight: a uniform draw into it is a weighted draw, and a cheap one.
_TYPE_SLOTS = tuple(name for name, weight in MIXED_WEIGHTS.items() for _ in range(weight))

# The wire names in snake_case and in camelCase; ``ingested_at`` has a third alias.
_SNAKE = (
    "event_id",
    "event_type",
    "project_id",
    "media_id",
    "task_assignment_id",
    "video_collaboration_id",
    "master_file_name",
)
_CAMEL = (
    "eventId",
    "eventType",
    "projectId",
    "mediaId",
    "taskAssignmentId",
    "videoCollaborationId",
    "masterFileName",
)
_INGESTED_KEYS = ("ingested_at", "ingestedAt", "IngestionTime")


@dataclass(frozen=True)
class EventPlan:
    """What to generate. Same plan, same lines: ``start`` fixes every timestamp."""

    count: int
    projects: int = 100
    mix: Mix = "mixed"
    seed: int = 0
    first_project_id: int = FIRST_PROJECT_ID
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    spacing_ms: int = 1
    event_id_share: float = 0.25
    """Share of events that carry their own ``event_id`` (the rest get a derived one)."""


class Subject(NamedTuple):
    """What one event is about, before it is rendered in some producer's style."""

    event_type: str
    project_id: int
    media_id: int | None = None
    task_assignment_id: int | None = None
    video_collaboration_id: int | None = None
    master_file_name: str | None = None


def subjects(plan: EventPlan, rng: random.Random) -> Iterator[Subject]:
    """The events' content, in order, for the plan's mix."""
    if plan.mix == "project-created":
        for index in range(plan.count):
            yield Subject("PROJECT_CREATED", plan.first_project_id + index % plan.projects)
    elif plan.mix == "file-heavy":
        yield from _file_bursts(plan)
    else:
        draw, slots = rng.random, len(_TYPE_SLOTS)
        for _ in range(plan.count):
            project_id = plan.first_project_id + int(draw() * plan.projects)
            yield _subject(plan.seed, _TYPE_SLOTS[int(draw() * slots)], project_id, rng)


def _file_bursts(plan: EventPlan) -> Iterator[Subject]:
    """Each project in turn adds all of its files at once: 20 to 100 PROJECT_FILE_ADDED."""
    produced, burst = 0, 0
    while produced < plan.count:
        project_id = plan.first_project_id + burst % plan.projects
        for media_id in data.media_ids(plan.seed, project_id)[: plan.count - produced]:
            yield Subject("PROJECT_FILE_ADDED", project_id, media_id=media_id)
            produced += 1
        burst += 1


def _subject(seed: int, event_type: str, project_id: int, rng: random.Random) -> Subject:
    if event_type == "PROJECT_FILE_ADDED":
        count = data.media_count(seed, project_id)
        media_id = project_id * data.CHILD_SPAN + 1 + int(rng.random() * count)
        return Subject(event_type, project_id, media_id=media_id)
    if event_type.startswith("CUSTOM_TASK_"):
        task_id = rng.choice(data.task_assignment_ids(seed, project_id))
        return Subject(event_type, project_id, task_assignment_id=task_id)
    if event_type.startswith("VIDEO_COLLABORATION_"):
        video_id = data.video_collaboration_id(project_id)
        return Subject(event_type, project_id, video_collaboration_id=video_id)
    if event_type == "PROJECT_MFN_ADDED":
        return Subject(event_type, project_id, master_file_name=data.project_mfn(seed, project_id))
    return Subject(event_type, project_id)


class _Clock:
    """ISO-8601 UTC timestamps at fixed spacing, formatting each whole second only once."""

    def __init__(self, start: datetime, spacing_ms: int) -> None:
        self._start_ms = int(start.timestamp() * 1000)
        self._spacing = spacing_ms
        self._second = -1
        self._prefix = ""

    def at(self, index: int) -> str:
        moment = self._start_ms + index * self._spacing
        second, millis = divmod(moment, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{millis:03d}Z"


def event_lines(plan: EventPlan) -> Iterator[tuple[str, str]]:
    """``(project_id, JSON line)`` per event; the project id is the natural Kafka key."""
    rng = random.Random(plan.seed)
    style = random.Random(f"{plan.seed}:style")
    clock = _Clock(plan.start, plan.spacing_ms)
    for index, subject in enumerate(subjects(plan, rng)):
        yield str(subject.project_id), _render(subject, clock.at(index), style, plan)


def _render(subject: Subject, ingested_at: str, style: random.Random, plan: EventPlan) -> str:
    bits = style.getrandbits(32)
    keys = _CAMEL if bits & 1 else _SNAKE
    parts = []
    if (bits >> 4 & 0xFFFF) / 0x10000 < plan.event_id_share:
        parts.append(f'"{keys[0]}": "{style.getrandbits(128):032x}"')
    parts.append(f'"{keys[1]}": "{subject.event_type}"')
    parts.append(f'"{keys[2]}": {_id(subject.project_id, bits & 2)}')
    parts.append(f'"{_INGESTED_KEYS[(bits >> 2) % 3]}": "{ingested_at}"')
    if subject.media_id is not None:
        parts.append(f'"{keys[3]}": {_id(subject.media_id, bits & 4)}')
    if subject.task_assignment_id is not None:
        parts.append(f'"{keys[4]}": {_id(subject.task_assignment_id, bits & 4)}')
    if subject.video_collaboration_id is not None:
        parts.append(f'"{keys[5]}": {_id(subject.video_collaboration_id, bits & 4)}')
    if subject.master_file_name is not None:
        parts.append(f'"{keys[6]}": "{subject.master_file_name}"')
    return "{" + ", ".join(parts) + "}"


def _id(value: int, quoted: int) -> str:
    return f'"{value}"' if quoted else str(value)
