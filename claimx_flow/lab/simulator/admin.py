"""``/_admin``: change faults and read counters while the simulator runs.

``GET /_admin/faults`` shows the knobs; ``POST`` (or ``PATCH``) changes the ones given and keeps
the rest; ``PUT`` replaces them all (unset knobs go back to off); ``DELETE`` turns every fault
off. ``GET /_admin/stats`` is the counters; ``POST /_admin/reset`` restores the start-time
faults and zeroes the counters. No auth: the simulator is a test double on a private port.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from claimx_flow.lab.simulator.faults import Faults
from claimx_flow.lab.simulator.server import SIMULATOR


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/_admin/faults", show_faults, name="admin_faults")
    router.add_post("/_admin/faults", change_faults)
    router.add_patch("/_admin/faults", change_faults)
    router.add_put("/_admin/faults", replace_faults)
    router.add_delete("/_admin/faults", clear_faults)
    router.add_get("/_admin/stats", show_stats, name="admin_stats")
    router.add_post("/_admin/reset", reset, name="admin_reset")


def _faults_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIMULATOR].faults.model_dump(mode="json"))


async def show_faults(request: web.Request) -> web.Response:
    return _faults_json(request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object of fault knobs")
    return body


def _invalid(exc: ValidationError) -> web.HTTPBadRequest:
    problems = [
        {"knob": ".".join(str(part) for part in error["loc"]), "error": error["msg"]}
        for error in exc.errors()
    ]
    return web.HTTPBadRequest(
        text=json.dumps({"error": "invalid faults", "problems": problems}),
        content_type="application/json",
    )


async def change_faults(request: web.Request) -> web.Response:
    changes = await _body(request)
    try:
        request.app[SIMULATOR].set_faults(**changes)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return _faults_json(request)


async def replace_faults(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        faults = Faults.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None
    request.app[SIMULATOR].replace_faults(faults)
    return _faults_json(request)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[SIMULATOR].replace_faults(Faults())
    return _faults_json(request)


async def show_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIMULATOR].stats.snapshot())


async def reset(request: web.Request) -> web.Response:
    request.app[SIMULATOR].reset()
    return web.json_response({"reset": True})
