"""Real storage peers for the storage tests.

``azurite``: Azurite's Blob service (the one in ``AZURITE_BLOB_ENDPOINT`` if set, else one started
from the stack code, installed with npm into ``.cache/azurite`` once). ``dfs_server``: the DFS
test server (see ``dfs_server.py`` for why it exists), signed with Azurite's public development
key so the SDK's real shared-key signing is checked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from pydantic import SecretStr

from claimx_flow.config import Settings
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.stack.azurite import ACCOUNT_KEY, ACCOUNT_NAME, ENDPOINT_ENV, AzuriteService
from tests.conftest import REPO
from tests.isolation import isolated_settings
from tests.storage.dfs_server import DfsServer

LAKEHOUSE = "lakehouse-1"


def onelake_settings(endpoint: str, workspace: str, **overrides: object) -> Settings:
    """Settings that send files and tables to ``workspace`` on an emulator with the dev key."""
    values: dict[str, object] = {
        "onelake_workspace_id": workspace,
        "onelake_lakehouse_id": LAKEHOUSE,
        "onelake_endpoint": endpoint,
        "onelake_account_key": SecretStr(ACCOUNT_KEY),
        **overrides,
    }
    return Settings(**values)


def onelake_isolated(
    kafka_bootstrap: str, tmp_path: Path, endpoint: str, workspace: str, **overrides: object
) -> Settings:
    """``onelake_settings`` for a test's own pipeline: isolated topics (``isolated_settings``)
    and its own data directory."""
    return isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        onelake_workspace_id=workspace,
        onelake_lakehouse_id=LAKEHOUSE,
        onelake_endpoint=endpoint,
        onelake_account_key=SecretStr(ACCOUNT_KEY),
        **overrides,
    )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Blob endpoint, ``http://127.0.0.1:PORT/devstoreaccount1``."""
    external = os.environ.get(ENDPOINT_ENV)
    if external:
        yield external.rstrip("/")
        return
    os.environ.setdefault("CLAIMX_CACHE_DIR", str(REPO / ".cache"))
    running = AzuriteService().start(tmp_path_factory.mktemp("azurite"))
    try:
        yield running.endpoint
    finally:
        stop_process_group(running.pid)


@pytest.fixture
def azurite_workspace(azurite: str) -> Iterator[str]:
    """A fresh container on Azurite: what a OneLake workspace is to the Blob API."""
    name = f"ws-{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient(
        azurite, credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}
    )
    container = service.create_container(name)
    yield name
    container.delete_container()
    service.close()


@pytest.fixture(scope="session")
def dfs_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DfsServer]:
    with DfsServer(tmp_path_factory.mktemp("dfs"), ACCOUNT_NAME, ACCOUNT_KEY) as server:
        yield server


@pytest.fixture
def dfs_server(dfs_session: DfsServer) -> Iterator[DfsServer]:
    """The session's DFS server with no faults or counts left over from another test."""
    dfs_session.reset()
    yield dfs_session
    dfs_session.reset()


@pytest.fixture
def dfs_workspace(dfs_server: DfsServer) -> str:
    """A fresh file system on the DFS server (OneLake's workspace)."""
    name = f"ws-{uuid.uuid4().hex[:12]}"
    dfs_server.create_file_system(name)
    return name


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "cached.bin"
    path.write_bytes(os.urandom(300_000))
    return path
