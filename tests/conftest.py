"""Session-wide real servers and factories shared by every test module.

Kafka is a real broker: the one in ``KAFKA_BOOTSTRAP_SERVERS`` if set, else one this session
starts from the project's own stack code and stops at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import await_leaders
from claimx_flow.lab.process import TIE_ENV, stop_process_group
from claimx_flow.lab.stack import KafkaService, RunningService
from claimx_flow.storage.locations import AZURITE_URL_ENV

REPO = Path(__file__).resolve().parent.parent

# Every server and stage a test starts dies with the test run, even a killed one.
os.environ[TIE_ENV] = "1"


@pytest.fixture(autouse=True)
def _emulator_url_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``table_location`` (the preflight's tables check too) exports the emulator's URL for
    deltalake into this process; each test starts without it."""
    monkeypatch.delenv(AZURITE_URL_ENV, raising=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    os.environ.setdefault("CLAIMX_CACHE_DIR", str(REPO / ".cache"))
    running: RunningService = KafkaService().start(tmp_path_factory.mktemp("kafka"))
    try:
        yield running.endpoint
    finally:
        stop_process_group(running.pid)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No ClaimX/Kafka variables from the outer environment and no stray config.yaml."""
    for name in list(os.environ):
        if name.startswith(
            ("KAFKA_", "CLAIMX_", "ONELAKE_", "DOWNLOAD_", "ENRICHMENT_")
        ) or name in {
            "RETRY_DELAYS",
            "MAX_RETRIES",
            "CACHE_DIR",
            "ENABLE_DELTA_WRITES",
        }:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> Settings:
    return Settings(kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory for uuid-named topics, deleted after the test."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "test") -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
            name
        ].result(timeout=30)
        await_leaders(admin, [name])
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


pytest_plugins = ["tests.simulator_fixtures"]
