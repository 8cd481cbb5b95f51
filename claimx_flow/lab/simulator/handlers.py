"""The four ClaimX REST calls and the media files, answered from ``data.py``.

Auth, faults and counting happen before these run (``server.py``); a handler only knows which
entity was asked for and in which response shape to return it, and whether that entity is to
be answered with poison (``Faults.hostile``, made in ``hostile.py``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from claimx_flow.lab.simulator import data, hostile
from claimx_flow.lab.simulator.faults import stable_fraction
from claimx_flow.lab.simulator.server import SIMULATOR, Simulator
from claimx_flow.lab.simulator.signing import UrlCheck, expiry_iso, now_millis
from claimx_flow.lab.simulator.stats import MEDIA_DOWNLOAD

_CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "heic": "image/heic",
    "mp4": "video/mp4",
    "pdf": "application/pdf",
}


def add_routes(app: web.Application, base: str) -> None:
    router = app.router
    router.add_get(f"{base}/export/project/{{projectId}}", project, name="project")
    router.add_get(f"{base}/export/project/{{projectId}}/media", media, name="media")
    router.add_get(
        f"{base}/customTasks/assignment/{{assignmentId}}", task_assignment, name="task_assignment"
    )
    router.add_post(f"{base}/data", video_report, name="video_collaboration")
    router.add_get("/media/{projectId}/{mediaId}", media_download, name=MEDIA_DOWNLOAD)
    router.add_get("/health", health, name="health")
    if base:
        router.add_get(f"{base}/health", health, name="api_health")


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def _numeric(value: Any) -> int | None:
    text = str(value)
    return int(text) if text.isdigit() else None


def _pick(sim: Simulator, choice: str, options: tuple[str, ...], entity_id: int) -> str:
    """The configured shape; for ``mixed``, a stable pick per entity."""
    if choice != "mixed":
        return choice
    return options[int(stable_fraction(sim.seed, "shape", entity_id) * len(options))]


def _known_project(sim: Simulator, raw_id: str) -> int | web.Response:
    project_id = _numeric(raw_id)
    if project_id is None:
        return _problem(400, f"invalid project id {raw_id!r}")
    if sim.injector.project_not_found(project_id):
        return _problem(404, f"project {project_id} not found")
    return project_id


async def project(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    project_id = _known_project(sim, request.match_info["projectId"])
    if isinstance(project_id, web.Response):
        return project_id
    body = data.project_response(sim.seed, project_id)
    shape = _pick(sim, sim.injector.faults.project_shape, ("wrapped", "bare"), project_id)
    hostility = sim.injector.faults.hostile
    poison = hostility.projects.get(str(project_id))
    if poison is not None:
        sim.stats.record_fault(hostile.served_kind(poison))
        wrap = (lambda inner: {"data": inner}) if shape == "wrapped" else (lambda inner: inner)
        return hostile.answer(
            sim.seed, "project", project_id, body["data"], poison, hostility.huge_chars, wrap
        )
    return _json(body if shape == "wrapped" else body["data"])


async def media(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    project_id = _known_project(sim, request.match_info["projectId"])
    if isinstance(project_id, web.Response):
        return project_id
    ids = data.media_ids(sim.seed, project_id)
    selected = request.query.get("mediaIds")
    if selected is not None:
        parts = [part.strip() for part in selected.split(",") if part.strip()]
        if not all(part.isdigit() for part in parts):
            return _problem(400, f"invalid mediaIds {selected!r}")
        known = set(ids)
        ids = [media_id for media_id in dict.fromkeys(map(int, parts)) if media_id in known]
    origin = f"{request.scheme}://{request.host}"
    issued, ttl = now_millis(), sim.ttl_ms()
    if sim.injector.faults.expired_urls:
        issued -= ttl + 60_000
    expires_at = expiry_iso(issued, ttl)
    items = [
        _media_item(
            sim,
            media_id,
            sim.signer.sign(origin, f"/media/{project_id}/{media_id}", ttl, issued),
            expires_at,
            request.url.port or 80,
        )
        for media_id in ids
    ]
    shape = _pick(sim, sim.injector.faults.media_shape, ("list", "data", "media"), project_id)
    hostility = sim.injector.faults.hostile
    poison = hostility.media_lists.get(str(project_id))
    if poison is not None:
        sim.stats.record_fault(hostile.served_kind(poison))
        wrap = (lambda inner: inner) if shape == "list" else (lambda inner: {shape: inner})
        return hostile.answer(
            sim.seed, "media", project_id, items, poison, hostility.huge_chars, wrap
        )
    if not hostility.empty:  # a spoiled item may hold what only Python's own JSON writes
        return hostile.json_answer(items if shape == "list" else {shape: items})
    return _json(items if shape == "list" else {shape: items})


def _json(document: Any) -> web.Response:
    return web.Response(
        body=data.answer_bytes(document), content_type="application/json", charset="utf-8"
    )


def _media_item(sim: Simulator, media_id: int, link: str, expires_at: str, port: int) -> Any:
    """One item of a media list, with its link and its fields spoiled where asked."""
    hostility = sim.injector.faults.hostile
    url_poison = hostility.media_urls.get(str(media_id))
    if url_poison is not None:
        sim.stats.record_fault(hostile.served_kind(url_poison))
        link = hostile.media_url(sim.seed, media_id, link, port, url_poison, hostility.huge_chars)
    item = data.media_item(sim.seed, media_id, link, expires_at)
    item_poison = hostility.media_items.get(str(media_id))
    if item_poison is None:
        return item
    sim.stats.record_fault(hostile.served_kind(item_poison))
    return hostile.spoil_item(sim.seed, media_id, item, item_poison, hostility.huge_chars)


async def task_assignment(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    assignment_id = _numeric(request.match_info["assignmentId"])
    if assignment_id is None:
        return _problem(400, "invalid assignment id")
    project_id = _known_project(sim, str(data.project_of(assignment_id)))
    if isinstance(project_id, web.Response):
        return project_id
    full = request.query.get("full", "false").lower() == "true"
    assignment = data.task_assignment(sim.seed, assignment_id, full=full)
    hostility = sim.injector.faults.hostile
    poison = hostility.task_assignments.get(str(assignment_id))
    if poison is not None:
        sim.stats.record_fault(hostile.served_kind(poison))
        return hostile.answer(
            sim.seed, "task_assignment", assignment_id, assignment, poison, hostility.huge_chars
        )
    return _json(assignment)


async def video_report(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return _problem(400, "request body is not JSON")
    if not isinstance(body, dict) or body.get("reportType") != "VIDEO_COLLABORATION":
        return _problem(400, "reportType must be VIDEO_COLLABORATION")
    raw_id = body.get("projectId")
    if isinstance(raw_id, bool) or _numeric(raw_id) is None:
        return _problem(400, "projectId must be a number")
    project_id = _known_project(sim, str(raw_id))
    if isinstance(project_id, web.Response):
        return project_id
    item = data.video_collaboration(sim.seed, data.video_collaboration_id(project_id))
    shapes = ("object", "list", "data", "collaborations", "videoCollaboration")
    shape = _pick(sim, sim.injector.faults.video_shape, shapes, project_id)
    hostility = sim.injector.faults.hostile
    poison = hostility.video_reports.get(str(project_id))
    if poison is not None:
        sim.stats.record_fault(hostile.served_kind(poison))
        return hostile.answer(
            sim.seed,
            "video_collaboration",
            project_id,
            item,
            poison,
            hostility.huge_chars,
            lambda spoiled: _video_shaped(sim, project_id, spoiled, shape),
        )
    return _json(_video_shaped(sim, project_id, item, shape))


def _video_shaped(sim: Simulator, project_id: int, item: Any, shape: str) -> Any:
    if shape == "object":
        return item
    # A report lists other claims too: the client must pick this project's item.
    neighbour = data.video_collaboration(sim.seed, data.video_collaboration_id(project_id + 1))
    items = [neighbour, item]
    if shape == "list":
        return items
    return {shape: item if shape == "videoCollaboration" else items}


async def media_download(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR]
    query = request.query
    check = sim.signer.check(
        request.path, query.get("systemDate", ""), query.get("expires", ""), query.get("sig", "")
    )
    if check is UrlCheck.EXPIRED:
        says = sim.injector.faults.expired_answer == "says_expired"
        return web.Response(
            status=403,
            text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            if says
            else "<Error><Code>AccessDenied</Code></Error>",
            content_type="application/xml",
        )
    if check is UrlCheck.BAD_SIGNATURE:
        return web.Response(
            status=403,
            text="<Error><Code>SignatureDoesNotMatch</Code></Error>",
            content_type="application/xml",
        )
    project_id = _numeric(request.match_info["projectId"])
    media_id = _numeric(request.match_info["mediaId"])
    if (
        project_id is None
        or media_id is None
        or sim.injector.project_not_found(project_id)
        or not data.is_media_of(sim.seed, project_id, media_id)
    ):
        return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
    content = data.media_content(sim.seed, media_id, sim.config.media_bytes)
    sim.stats.media_bytes_served += len(content)
    extension = data.media_type(sim.seed, media_id)
    content_type = _CONTENT_TYPES.get(extension, "application/octet-stream")
    poison = sim.injector.faults.hostile.media_bodies.get(str(media_id))
    if poison is not None:
        sim.stats.record_fault(hostile.served_kind(poison))
        return await hostile.media_body(request, sim.seed, media_id, content, content_type, poison)
    return web.Response(body=content, content_type=content_type)


async def health(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    if sim.injector.faults.down:
        return web.json_response({"status": "down"}, status=503)
    return web.json_response({"status": "ok", "seed": sim.seed})
