"""Synthetic ClaimX entities, derived from ``(seed, id)`` alone.

Nothing is stored: any numeric id names an entity, and asking twice gives the same answer, so
tests can compute what the simulator serves and a benchmark can use millions of projects.
Child ids embed their project (``project_id * 1000 + k``) so a media or task id leads back to it.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pydantic_core

from claimx_flow.lab.simulator.draws import Draws

CHILD_SPAN = 1000
MIN_MEDIA, MAX_MEDIA = 20, 100
MAX_TASKS = 5
_EPOCH = datetime(2023, 1, 1, tzinfo=UTC)

_FIRST_NAMES = ("Ava", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jon")
_LAST_NAMES = ("Adams", "Brown", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito")
_CITIES = (
    ("Austin", "TX", "Travis"),
    ("Denver", "CO", "Denver"),
    ("Tampa", "FL", "Hillsborough"),
    ("Omaha", "NE", "Douglas"),
    ("Boise", "ID", "Ada"),
)
_LOSS_TYPES = (("Water", "Pipe burst"), ("Wind", "Storm"), ("Fire", "Kitchen fire"))
_STATUSES = ("Open", "In Progress", "Inspected", "Closed")
_MEDIA_TYPES = ("jpg", "jpg", "jpg", "png", "mp4", "pdf", "heic")
_GPS_SOURCES = ("EXIF", "DEVICE", None)
_TASKS = (
    (101, "Roof inspection", 9001),
    (102, "Contents inventory", 9002),
    (103, "Water mitigation photos", 9003),
    (104, "Policyholder statement", 9004),
)
COMPANY_NAME = "Simulated Adjusting Co."


def _rng(seed: int, kind: str, entity_id: int) -> Draws:
    return Draws(f"{seed}:{kind}:{entity_id}")


def _iso(moment: datetime | None) -> str | None:
    """UTC to the second with a ``Z``, as ``strftime("%Y-%m-%dT%H:%M:%SZ")`` writes it (every
    moment here is a UTC one with a four-digit year) in a third of its time."""
    if moment is None:
        return None
    return f"{moment.date().isoformat()}T{moment.time().isoformat('seconds')}Z"


def _moment(rng: Draws, after: datetime, max_days: int) -> datetime:
    return after + timedelta(seconds=rng.randrange(max_days * 86_400))


def project_of(child_id: int) -> int:
    """The project a media, task assignment or video collaboration id belongs to."""
    return child_id // CHILD_SPAN if child_id >= CHILD_SPAN else child_id


def project_mfn(seed: int, project_id: int) -> str:
    """The project's master file name, as the project response and MFN events carry it."""
    return f"MFN-{project_id}-{_rng(seed, 'mfn', project_id).randrange(10_000):04d}"


@lru_cache(maxsize=65_536)
def media_count(seed: int, project_id: int) -> int:
    return _rng(seed, "media-count", project_id).randint(MIN_MEDIA, MAX_MEDIA)


def media_ids(seed: int, project_id: int) -> list[int]:
    """Every media id of the project, in the order the media list returns them."""
    first = project_id * CHILD_SPAN
    return list(range(first + 1, first + media_count(seed, project_id) + 1))


@lru_cache(maxsize=65_536)
def task_assignment_ids(seed: int, project_id: int) -> tuple[int, ...]:
    count = _rng(seed, "task-count", project_id).randint(1, MAX_TASKS)
    return tuple(project_id * CHILD_SPAN + k for k in range(1, count + 1))


def video_collaboration_id(project_id: int) -> int:
    """A project's one video collaboration (the report API returns one per claim)."""
    return project_id * CHILD_SPAN + 1


def team_members(seed: int, project_id: int) -> list[dict[str, Any]]:
    rng = _rng(seed, "team", project_id)
    members = []
    for index in range(rng.randint(1, 3)):
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        members.append(
            {
                "userName": f"{first}.{last}{index}@adjusters.example".lower(),
                "primaryContact": index == 0,
                "mfn": project_mfn(seed, project_id),
            }
        )
    return members


def project(seed: int, project_id: int) -> dict[str, Any]:
    """The inner project object with every field of CLAIMX_DOMAIN.md §2."""
    rng = _rng(seed, "project", project_id)
    created = _moment(rng, _EPOCH, 700)
    loss = created - timedelta(days=rng.randint(1, 30))
    contacted = created + timedelta(hours=rng.randint(1, 72))
    inspected = contacted + timedelta(days=rng.randint(1, 20)) if rng.random() < 0.7 else None
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    city, state, county = rng.choice(_CITIES)
    loss_type, cause = rng.choice(_LOSS_TYPES)
    return {
        "projectId": project_id,
        "projectNumber": f"PRJ-{project_id}",
        "mfn": project_mfn(seed, project_id),
        "secondaryNumber": f"SEC-{rng.randrange(10**6):06d}",
        "createdDate": _iso(created),
        "status": rng.choice(_STATUSES),
        "dateOfLoss": _iso(loss),
        "typeOfLoss": loss_type,
        "causeOfLoss": cause,
        "lossDescription": f"{cause} reported by the policyholder at the insured property.",
        "yearBuilt": rng.randint(1950, 2022),
        "squareFootage": rng.randint(600, 6000),
        "dateReceived": _iso(created),
        "dateContacted": _iso(contacted),
        "plannedInspectionDate": _iso(contacted + timedelta(days=rng.randint(1, 10))),
        "dateInspected": _iso(inspected),
        "appointmentDate": _iso(contacted + timedelta(days=rng.randint(1, 5))),
        "customAttribute1": f"region-{rng.randint(1, 9)}",
        "customAttribute2": rng.choice(("HO3", "HO5", "DP3")),
        "customAttribute3": None if rng.random() < 0.5 else f"cat-{rng.randint(1, 99)}",
        "customExternalUniqueId": f"EXT-{project_id}",
        "customerInformation": {
            "firstName": first,
            "lastName": last,
            "customBusinessName": None if rng.random() < 0.8 else f"{last} Holdings LLC",
            "businessLineType": rng.choice(("Personal", "Commercial")),
            "emails": [
                {
                    "emailAddress": f"{first}.{last}.{project_id}@mail.example".lower(),
                    "primary": True,
                },
                {"emailAddress": f"{last}.alt{project_id}@mail.example".lower(), "primary": False},
            ],
            "phones": [{"phoneNumber": f"555{rng.randrange(10**7):07d}", "phoneCountryCode": "1"}],
        },
        "address": {
            "street1": f"{rng.randint(1, 9999)} Main St",
            "street2": None if rng.random() < 0.7 else f"Unit {rng.randint(1, 40)}",
            "city": city,
            "stateProvince": state,
            "zipPostcode": f"{rng.randrange(10**5):05d}",
            "county": county,
            "country": "US",
        },
    }


@lru_cache(maxsize=4096)
def project_response(seed: int, project_id: int) -> dict[str, Any]:
    """``GET /export/project/{id}`` in its usual, ``data``-wrapped shape (shared: do not mutate)."""
    return {
        "data": {
            "project": project(seed, project_id),
            "teamMembers": team_members(seed, project_id),
            "companyName": COMPANY_NAME,
        }
    }


def is_media_of(seed: int, project_id: int, media_id: int) -> bool:
    index = media_id - project_id * CHILD_SPAN
    return project_of(media_id) == project_id and 1 <= index <= media_count(seed, project_id)


def media_item(seed: int, media_id: int, download_link: str, expires_at: str) -> dict[str, Any]:
    """One media item; the caller signs the download link because it knows the host and time."""
    return {
        **_media_fields(seed, media_id),
        "fullDownloadLink": download_link,
        "expiresAt": expires_at,
    }


@lru_cache(maxsize=65_536)
def _media_fields(seed: int, media_id: int) -> dict[str, Any]:
    project_id = project_of(media_id)
    rng = _rng(seed, "media", media_id)
    extension = rng.choice(_MEDIA_TYPES)
    tasks = task_assignment_ids(seed, project_id)
    taken = _moment(rng, _EPOCH, 700)
    return {
        "mediaID": media_id,
        "taskAssignmentId": rng.choice(tasks) if rng.random() < 0.6 else None,
        "mediaType": extension,
        "mediaName": _file_name(media_id, extension),
        "mediaDescription": rng.choice(("Front elevation", "Kitchen ceiling", "Roof", None)),
        "mediaComment": None if rng.random() < 0.6 else "Taken by the policyholder",
        "latitude": round(rng.uniform(25.0, 48.0), 6),
        "longitude": round(rng.uniform(-122.0, -75.0), 6),
        "gpsSource": rng.choice(_GPS_SOURCES),
        "takenDate": _iso(taken),
    }


def media_type(seed: int, media_id: int) -> str:
    """The media's file extension (the first draw of its generator, as in ``media_item``)."""
    return _rng(seed, "media", media_id).choice(_MEDIA_TYPES)


def _file_name(media_id: int, extension: str) -> str:
    return f"{'VID' if extension == 'mp4' else 'IMG'}_{media_id}.{extension}"


def media_content(seed: int, media_id: int, size: int) -> bytes:
    """The file behind a media id: ``size`` bytes, the same every time, its own for every media
    id (the first 32 bytes are a hash of the id) and pseudo-random after that."""
    head = hashlib.blake2b(f"{seed}:content:{media_id}".encode(), digest_size=32).digest()
    return head[:size] + _filler(seed, size)[len(head) :]


@lru_cache(maxsize=8)
def _filler(seed: int, size: int) -> bytes:
    """The bytes every file of one size shares, made once: serving a file then costs a copy,
    as an object store's would, not a run of the random generator (280 µs per 64 KiB)."""
    return random.Random(f"{seed}:filler:{size}").randbytes(size)


def task_assignment(seed: int, assignment_id: int, full: bool = True) -> dict[str, Any]:
    """A task assignment with, when ``full``, its nested ``customTask`` and ``externalLinkData``."""
    project_id = project_of(assignment_id)
    rng = _rng(seed, "task", assignment_id)
    task_id, task_name, form_id = rng.choice(_TASKS)
    assigned = _moment(rng, _EPOCH, 700)
    completed = assigned + timedelta(hours=rng.randint(1, 240)) if rng.random() < 0.6 else None
    assignment: dict[str, Any] = {
        "assignmentId": assignment_id,
        "taskId": task_id,
        "taskName": task_name,
        "formId": form_id,
        "projectId": project_id,
        "assigneeId": rng.randint(10_000, 99_999),
        "assignorId": rng.randint(10_000, 99_999),
        "assignor": f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        "dateAssigned": _iso(assigned),
        "dateCompleted": _iso(completed),
        "cancelledDate": None,
        "cancelledByResourceId": None,
        "status": "COMPLETED" if completed else "ASSIGNED",
        "pdfProjectMediaId": project_id * CHILD_SPAN + 1 if completed else None,
        "dateExported": _iso(completed),
        "formResponseId": f"FR-{assignment_id}",
        "stpEnabled": rng.random() < 0.3,
        "stpStartedDate": None,
        "mfn": project_mfn(seed, project_id),
        "xactimateExportable": rng.random() < 0.5,
        "fraudLanguageAcceptedDate": _iso(completed),
        "resubmitTaskAssignmentId": None,
        "url": f"https://claimxperience.example/tasks/{assignment_id}",
    }
    if full:
        assignment["customTask"] = _custom_task(rng, task_id, task_name, form_id)
        assignment["externalLinkData"] = _external_link(rng, assignment_id)
    return assignment


def _custom_task(rng: Draws, task_id: int, name: str, form_id: int) -> dict[str, Any]:
    # The template's modification date depends on the task only, as a shared template's would.
    modified = _EPOCH + timedelta(days=task_id % 97)
    return {
        "taskId": task_id,
        "compId": 77,
        "name": name,
        "description": f"{name} for the claim",
        "formId": form_id,
        "formName": f"{name} form",
        "enabled": True,
        "default": False,
        "isManualDelivery": False,
        "isExternalLinkDelivery": True,
        "providePortalAccess": rng.random() < 0.5,
        "notifyAssignedSendRecipient": True,
        "notifyAssignedSubject": f"New task: {name}",
        "notifyTaskCompleted": True,
        "notifyCompletedSubject": f"Completed: {name}",
        "allowReSubmit": False,
        "autoGeneratePdf": True,
        "modifiedBy": "template.admin@adjusters.example",
        "modifiedById": 5001,
        "modifiedDate": _iso(modified),
    }


def _external_link(rng: Draws, assignment_id: int) -> dict[str, Any]:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    return {
        "linkId": assignment_id,
        "linkCode": f"LC{assignment_id:x}".upper(),
        "url": f"https://claimxperience.example/l/{assignment_id:x}",
        "notificationAccessMethod": rng.choice(("EMAIL", "SMS")),
        "countryId": 1,
        "stateId": rng.randint(1, 50),
        "email": f"{first}.{last}@mail.example".lower(),
        "firstName": first,
        "lastName": last,
        "phone": f"555{rng.randrange(10**7):07d}",
        "phoneCountryCode": "1",
    }


def video_collaboration(seed: int, collaboration_id: int) -> dict[str, Any]:
    project_id = project_of(collaboration_id)
    rng = _rng(seed, "video", collaboration_id)
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    created = _moment(rng, _EPOCH, 700)
    seconds = rng.randint(60, 5400)
    return {
        "videoCollaborationId": collaboration_id,
        "claimId": project_id,
        "mfn": project_mfn(seed, project_id),
        "claimNumber": f"CLM-{project_id}",
        "policyNumber": f"POL-{rng.randrange(10**8):08d}",
        "emailUserName": f"{first}.{last}@adjusters.example".lower(),
        "claimRepFirstName": first,
        "claimRepLastName": last,
        "claimRepFullName": f"{first} {last}",
        "numberOfVideos": rng.randint(0, 5),
        "numberOfPhotos": rng.randint(0, 40),
        "numberOfViewers": rng.randint(1, 4),
        "sessionCount": rng.randint(1, 3),
        "totalTimeSeconds": seconds,
        "totalTime": f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}",
        "createdDate": _iso(created),
        "liveCallFirstSession": _iso(created + timedelta(minutes=5)),
        "liveCallLastSession": _iso(created + timedelta(minutes=5, seconds=seconds)),
        "companyId": 77,
        "companyName": COMPANY_NAME,
        "guid": hashlib.sha256(f"{seed}:guid:{collaboration_id}".encode()).hexdigest()[:32],
    }


def answer_bytes(document: Any) -> bytes:
    """A well-formed answer as the simulator writes it. pydantic-core writes a media list of a
    hundred signed links in a quarter of ``json.dumps``' time; the simulator shares the bench's
    cores with the stage it answers, so what it spends is taken from the stage measured. (A
    hostile answer that spoils fields keeps Python's own JSON: it may hold what only that
    writes; a truncated one cuts these bytes.)"""
    return pydantic_core.to_json(document)
