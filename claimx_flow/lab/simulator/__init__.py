"""A ClaimX API simulator and event generator: the test double every stage runs against.

Serves the four REST calls and signed, expiring media URLs with deterministic data from a seed,
injects faults on demand (and hostile answers for chosen entities), counts requests, and writes
raw events that refer to what it serves.
"""

from claimx_flow.lab.simulator.faults import Faults
from claimx_flow.lab.simulator.hostile import Hostility
from claimx_flow.lab.simulator.runner import (
    Endpoint,
    RunningSimulator,
    SimulatorProcess,
    serve_forever,
    start_in_thread,
    start_subprocess,
)
from claimx_flow.lab.simulator.server import (
    DEFAULT_BASE_PATH,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    Simulator,
    SimulatorConfig,
)

__all__ = [
    "DEFAULT_BASE_PATH",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "Endpoint",
    "Faults",
    "Hostility",
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "SimulatorProcess",
    "serve_forever",
    "start_in_thread",
    "start_subprocess",
]
