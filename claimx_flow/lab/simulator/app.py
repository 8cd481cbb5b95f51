"""The simulator's aiohttp application: its routes behind the fault-injecting middleware."""

from __future__ import annotations

from aiohttp import web

from claimx_flow.lab.simulator import admin, handlers
from claimx_flow.lab.simulator.server import SIMULATOR, Simulator, served_middleware


def build_app(simulator: Simulator) -> web.Application:
    app = web.Application(middlewares=[served_middleware])
    app[SIMULATOR] = simulator
    handlers.add_routes(app, simulator.config.base_path)
    admin.add_routes(app)
    return app
