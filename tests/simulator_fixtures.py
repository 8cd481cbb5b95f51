"""The ClaimX API simulator as fixtures: one server per session, a clean slate per test.

``simulator`` serves from a background thread on a free loopback port; ``sim`` is the same
server with faults and counters reset before and after the test; ``api_settings`` points the
pipeline's settings at it with the right credentials and a short timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from claimx_flow.config import Settings
from claimx_flow.lab.simulator import RunningSimulator, SimulatorConfig, start_in_thread

SIMULATOR_SEED = 1234
SIMULATOR_USERNAME = "sim-user"
SIMULATOR_PASSWORD = "sim-Pa55word-not-for-logs"


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(
        seed=SIMULATOR_SEED, username=SIMULATOR_USERNAME, password=SIMULATOR_PASSWORD
    )
    with start_in_thread(config) as running:
        yield running


@pytest.fixture
def sim(simulator: RunningSimulator) -> Iterator[RunningSimulator]:
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture
def api_settings(sim: RunningSimulator) -> Settings:
    return Settings(
        claimx_api_url=sim.api_url,
        claimx_api_username=SIMULATOR_USERNAME,
        claimx_api_password=SecretStr(SIMULATOR_PASSWORD),
        claimx_api_token=None,
        claimx_api_timeout_seconds=2.0,
        claimx_api_max_retries=3,
        claimx_api_concurrency=10,
    )
