"""Where files and Delta tables live: under ``CLAIMX_DATA_DIR`` by default, in OneLake once both
``ONELAKE_WORKSPACE_ID`` and ``ONELAKE_LAKEHOUSE_ID`` are set.

Authentication, decided here once for both:

* ``ONELAKE_ACCOUNT_KEY`` set (an ADLS Gen2 account or an emulator such as Azurite): shared-key
  auth for files and tables alike.
* otherwise files use azure-identity's ``DefaultAzureCredential`` (environment service principal,
  workload identity, managed identity, Azure CLI, …) and tables get no credential options, so
  delta-rs takes its own chain from the ``AZURE_*`` environment: a service principal
  (``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``/``AZURE_TENANT_ID``), then workload identity
  (``AZURE_FEDERATED_TOKEN_FILE``), else managed identity (``AZURE_CLIENT_ID`` picks a
  user-assigned one). A developer signed in with ``az login`` sets ``AZURE_USE_AZURE_CLI=true``.
  A token is not passed from Python: a static one would expire under a long-running writer.

An emulator endpoint (``http://127.0.0.1:PORT/ACCOUNT``) puts tables in deltalake's emulator
mode; see :func:`export_emulator_url` for why and what that takes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from claimx_flow.config import Settings
from claimx_flow.errors import ConfigError
from claimx_flow.storage.address import OneLakeAddress
from claimx_flow.storage.base import FileStore
from claimx_flow.storage.local import LocalFileStore

if TYPE_CHECKING:
    from claimx_flow.storage.onelake import OneLakeTuning

AZURITE_URL_ENV = "AZURITE_BLOB_STORAGE_URL"


def onelake_address(settings: Settings) -> OneLakeAddress | None:
    """The configured lakehouse, or None for local storage; half a configuration is an error."""
    workspace, lakehouse = settings.onelake_workspace_id, settings.onelake_lakehouse_id
    if not workspace and not lakehouse:
        return None
    if not workspace or not lakehouse:
        raise ConfigError(
            "ONELAKE_WORKSPACE_ID and ONELAKE_LAKEHOUSE_ID must be set together "
            "(neither: files and tables stay under CLAIMX_DATA_DIR)"
        )
    return OneLakeAddress(settings.onelake_endpoint, workspace, lakehouse)


def file_store(settings: Settings, tuning: OneLakeTuning | None = None) -> FileStore:
    """The store uploaded media go to; ``tuning`` adjusts OneLake transfers (chunks, retries)."""
    address = onelake_address(settings)
    if address is None:
        return LocalFileStore(settings.files_dir)
    # The Azure SDK only here: a stage that stores no files (all but upload) never loads it,
    # which kept tens of MiB off each of their processes.
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.identity.aio import DefaultAzureCredential

    from claimx_flow.storage.onelake import OneLakeFileStore

    secrets = tuple(settings.secret_values())
    key = settings.onelake_account_key
    if key is not None:
        credential = AzureNamedKeyCredential(address.account_name, key.get_secret_value())
        return OneLakeFileStore(address, credential, tuning=tuning, secrets=secrets)
    return OneLakeFileStore(
        address, DefaultAzureCredential(), tuning=tuning, secrets=secrets, owns_credential=True
    )


def table_location(settings: Settings, table_name: str) -> tuple[str, dict[str, str] | None]:
    """The table's URI and the deltalake storage options that reach it."""
    address = onelake_address(settings)
    if address is None:
        return str((settings.tables_dir / table_name).resolve()), None
    return address.uri("Tables", table_name), delta_storage_options(settings, address)


def delta_storage_options(settings: Settings, address: OneLakeAddress) -> dict[str, str]:
    """Options for deltalake's object store (see the module docstring for the credential)."""
    options = {"azure_storage_use_emulator": "true"} if address.path_style else {}
    if address.path_style:
        export_emulator_url(address)
    if settings.onelake_account_key is not None:
        options["azure_storage_account_key"] = settings.onelake_account_key.get_secret_value()
    return options


def export_emulator_url(address: OneLakeAddress) -> None:
    """Tell deltalake where the emulator is: ``AZURITE_BLOB_STORAGE_URL``, its only way.

    Without emulator mode, deltalake's object store lists the Delta log with ``startFrom``,
    which Azurite ignores, and every table past its first commit fails to load ("Invalid table
    version"). In emulator mode it filters the listing itself, but then it takes the endpoint
    from this variable alone (``azure_storage_endpoint`` is ignored), so it is set here, once
    per process; a different value already set would send tables to another emulator.
    """
    origin = address.origin
    current = os.environ.get(AZURITE_URL_ENV, "").rstrip("/")
    if current and current != origin:
        raise ConfigError(
            f"{AZURITE_URL_ENV}={current} points deltalake at another emulator than "
            f"ONELAKE_ENDPOINT ({address.endpoint}); unset it or make them agree"
        )
    os.environ[AZURITE_URL_ENV] = origin
