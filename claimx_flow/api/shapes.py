"""The response shapes ClaimX is known to return for the same call (CLAIMX_DOMAIN.md §2).

Each function turns any of them into the one shape the handlers use, or raises ``ShapeError``
when the payload is none of them (a permanent failure: asking again gives the same answer).
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]


class ShapeError(ValueError):
    """The payload is valid JSON but none of the known shapes."""


def _describe(payload: Any) -> str:
    if isinstance(payload, dict):
        keys = ", ".join(sorted(str(key) for key in payload)[:8])
        return f"an object with keys [{keys}]"
    return f"a {type(payload).__name__}"


def project_payload(payload: Any) -> JsonObject:
    """``{project, teamMembers, companyName}``, with or without the ``data`` wrapper.

    A bare project object (``projectId`` at the top) is accepted too.
    """
    inner = payload.get("data", payload) if isinstance(payload, dict) else payload
    if isinstance(inner, dict) and isinstance(inner.get("project"), dict):
        project = inner["project"]
    elif isinstance(inner, dict) and "projectId" in inner:
        project = inner
    else:
        raise ShapeError(f"expected a project, got {_describe(payload)}")
    return {
        "project": project,
        "teamMembers": list(inner.get("teamMembers") or []),
        "companyName": inner.get("companyName"),
    }


def media_items(payload: Any) -> list[JsonObject]:
    """A list of media items, from a list, ``{data: […]}`` or ``{media: […]}``."""
    items = payload
    for _ in range(2):  # also ``{data: {media: […]}}``
        if isinstance(items, dict):
            items = items.get("data", items.get("media", items))
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ShapeError(f"expected a list of media, got {_describe(payload)}")
    return items


def task_assignment(payload: Any) -> JsonObject:
    """The assignment object, bare or under ``data``."""
    inner = payload.get("data", payload) if isinstance(payload, dict) else payload
    if not isinstance(inner, dict) or "assignmentId" not in inner:
        raise ShapeError(f"expected a task assignment, got {_describe(payload)}")
    return inner


_VIDEO_WRAPPERS = ("data", "collaborations", "videoCollaboration")


def video_collaboration(payload: Any, project_id: str) -> JsonObject | None:
    """The project's collaboration from an object, a list, or either wrapped; None if empty.

    A report may list several claims: pick the item whose ``claimId`` is the project, else the
    first.
    """
    items = payload
    for _ in range(2):
        if isinstance(items, dict):
            wrapper = next((key for key in _VIDEO_WRAPPERS if key in items), None)
            if wrapper is None:
                break
            items = items[wrapper]
    if items is None:
        return None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ShapeError(f"expected video collaborations, got {_describe(payload)}")
    found: list[JsonObject] = items
    if not found:
        return None
    return next((item for item in found if str(item.get("claimId")) == str(project_id)), found[0])
