"""Which store and which table URI the settings choose, and how they authenticate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from claimx_flow.config import Settings
from claimx_flow.delta.tables import ATTACHMENTS
from claimx_flow.delta.writer import writer_for
from claimx_flow.errors import ConfigError
from claimx_flow.storage import LocalFileStore
from claimx_flow.storage.base import FileStore
from claimx_flow.storage.locations import file_store, table_location
from claimx_flow.storage.onelake import OneLakeFileStore

WORKSPACE = "8e3f7c1a-0000-4000-8000-000000000001"
LAKEHOUSE = "2b9d4e6f-0000-4000-8000-000000000002"
SECRET = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cw=="


def settings(**values: object) -> Settings:
    base: dict[str, object] = {"onelake_workspace_id": None, "onelake_lakehouse_id": None}
    return Settings(**{**base, **values})


def close(store: FileStore) -> None:
    asyncio.run(store.close())


def test_without_onelake_everything_stays_under_the_data_dir(tmp_path: Path) -> None:
    local = settings(claimx_data_dir=tmp_path)

    store = file_store(local)
    assert isinstance(store, LocalFileStore)
    assert store.root == (tmp_path / "files").resolve()
    assert table_location(local, "claimx_events") == (
        str((tmp_path / "tables" / "claimx_events").resolve()),
        None,
    )
    assert writer_for(local, ATTACHMENTS).uri.endswith("/tables/claimx_attachments")


def test_onelake_uses_the_fabric_host_and_the_ambient_identity() -> None:
    onelake = settings(onelake_workspace_id=WORKSPACE, onelake_lakehouse_id=LAKEHOUSE)

    uri, options = table_location(onelake, "claimx_events")
    assert uri == (
        f"abfss://{WORKSPACE}@onelake.dfs.fabric.microsoft.com/{LAKEHOUSE}/Tables/claimx_events"
    )
    assert options == {}  # delta-rs takes AZURE_* / workload / managed identity itself
    store = file_store(onelake)
    assert isinstance(store, OneLakeFileStore)
    assert store.uri_of("claimx/P/media/M_a.jpg") == (
        f"abfss://{WORKSPACE}@onelake.dfs.fabric.microsoft.com/{LAKEHOUSE}/Files/claimx/P/media/M_a.jpg"
    )
    close(store)


def test_a_storage_account_with_a_key_gets_shared_key_options() -> None:
    account = settings(
        onelake_workspace_id="claims",
        onelake_lakehouse_id="lake",
        onelake_endpoint="https://claimsacct.dfs.core.windows.net",
        onelake_account_key=SecretStr(SECRET),
    )

    uri, options = table_location(account, "claimx_media")
    assert uri == "abfss://claims@claimsacct.dfs.core.windows.net/lake/Tables/claimx_media"
    assert options == {"azure_storage_account_key": SECRET}


def test_half_a_onelake_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="ONELAKE_WORKSPACE_ID and ONELAKE_LAKEHOUSE_ID"):
        file_store(settings(onelake_workspace_id=WORKSPACE))
    with pytest.raises(ConfigError, match="ONELAKE_WORKSPACE_ID and ONELAKE_LAKEHOUSE_ID"):
        table_location(settings(onelake_lakehouse_id=LAKEHOUSE), "claimx_events")


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"onelake_endpoint": "https://example.com"}, "ONELAKE_ENDPOINT"),
        ({"onelake_workspace_id": "a/b"}, "ONELAKE_WORKSPACE_ID"),
        ({"onelake_lakehouse_id": "../x"}, "ONELAKE_LAKEHOUSE_ID"),
    ],
)
def test_unusable_onelake_values_name_their_variable(
    values: dict[str, object], variable: str
) -> None:
    bad = settings(
        **{
            "onelake_workspace_id": WORKSPACE,
            "onelake_lakehouse_id": LAKEHOUSE,
            "onelake_account_key": SecretStr(SECRET),
            **values,
        }
    )

    with pytest.raises(ConfigError, match=variable) as caught:
        table_location(bad, "claimx_events")
    assert SECRET not in str(caught.value)
