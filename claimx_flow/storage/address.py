"""Where a OneLake lakehouse is: its DFS endpoint, workspace and lakehouse, and the paths and
``abfss://`` URIs inside it.

Apart from the Azure SDK (``storage.onelake``): the Delta writers need only the URI, and a stage
that writes tables but no files should not load the SDK to get it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from claimx_flow.errors import ConfigError
from claimx_flow.storage.paths import UnsafePathError

Area = Literal["Files", "Tables"]

ONELAKE_DFS_SUFFIX = ".dfs.fabric.microsoft.com"
ADLS_DFS_SUFFIX = ".dfs.core.windows.net"
# Workspace and lakehouse ids are GUIDs; OneLake also accepts names such as "claims.Lakehouse".
_ITEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class OneLakeAddress:
    """Where OneLake (or an ADLS Gen2 account, or an emulator) keeps one lakehouse.

    ``endpoint`` is the DFS account URL. Emulators serve many accounts from one host and name
    the account in the path (``http://127.0.0.1:10000/devstoreaccount1``); their ``abfss://``
    URIs name the account's canonical host and the endpoint is passed alongside.
    """

    endpoint: str
    workspace: str
    lakehouse: str

    def __post_init__(self) -> None:
        for name, value in (
            ("ONELAKE_WORKSPACE_ID", self.workspace),
            ("ONELAKE_LAKEHOUSE_ID", self.lakehouse),
        ):
            if not _ITEM.match(value):
                raise ConfigError(f"{name}: {value!r} is not a OneLake item id or name")
        if self.path_style and not self.account_name:
            raise ConfigError(
                "ONELAKE_ENDPOINT: expected https://onelake.dfs.fabric.microsoft.com, "
                "https://ACCOUNT.dfs.core.windows.net or an emulator URL naming the account "
                "(http://127.0.0.1:10000/devstoreaccount1)"
            )

    @property
    def hostname(self) -> str:
        return (urlsplit(self.endpoint).hostname or "").lower()

    @property
    def path_style(self) -> bool:
        """True for emulators: the account is the URL's first path segment, not the host's."""
        return not self.hostname.endswith((ONELAKE_DFS_SUFFIX, ADLS_DFS_SUFFIX))

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, without the emulator's account path."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def account_name(self) -> str:
        if self.path_style:
            return urlsplit(self.endpoint).path.strip("/").split("/")[0]
        return self.hostname.split(".", 1)[0]

    @property
    def uri_host(self) -> str:
        """The host an ``abfss://`` URI names (one that deltalake's object store recognises)."""
        return f"{self.account_name}{ADLS_DFS_SUFFIX}" if self.path_style else self.hostname

    def item_path(self, area: Area, relative: str) -> str:
        """The path inside the workspace file system: ``{lakehouse}/{area}/{relative}``."""
        return f"{self.lakehouse}/{area}/{_checked_relative(relative)}"

    def uri(self, area: Area, relative: str) -> str:
        return f"abfss://{self.workspace}@{self.uri_host}/{self.item_path(area, relative)}"


def _checked_relative(path: str) -> str:
    """Relative paths only, with no ``.``/``..`` or empty segments: nothing leaves the area."""
    parts = path.split("/")
    if not path or "\\" in path or any(part in {"", ".", ".."} for part in parts):
        raise UnsafePathError(f"path {path!r} escapes the storage root")
    return path
