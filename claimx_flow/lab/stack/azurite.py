"""Azurite's Blob service from npm, without Docker: where Delta tables meet a real Azure API.

Azurite does not serve the ADLS Gen2 (DFS) file calls, so it stands in for OneLake's tables
(deltalake speaks the Blob API), not for its files.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from claimx_flow.errors import StackError
from claimx_flow.lab.process import (
    LOOPBACK,
    free_port,
    require_free_port,
    start_detached,
    wait_until,
)
from claimx_flow.lab.stack.cache import cache_root, fetch_once
from claimx_flow.lab.stack.services import RunningService

AZURITE_VERSION = "3.35.0"  # the newest that runs on Node 20
NPM_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 30.0
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's built-in development key: published in its documentation, the same on every
# machine, and accepted by nothing but an emulator. Not a secret.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
ENDPOINT_ENV = "AZURITE_BLOB_ENDPOINT"


def ensure_azurite(version: str = AZURITE_VERSION) -> Path:
    """The ``azurite-blob`` launcher, installed once with npm into the cache and reused."""
    root = cache_root() / "azurite"
    launcher = root / "node_modules" / ".bin" / "azurite-blob"
    marker = root / f".complete-{version}"
    fetch_once(
        root,
        lambda: marker.exists() and launcher.exists(),
        lambda: _install_azurite(version, root, marker, launcher),
    )
    return launcher


def _install_azurite(version: str, root: Path, marker: Path, launcher: Path) -> None:
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise StackError("Azurite needs Node.js and npm on PATH (e.g. apt-get install nodejs npm)")
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root)]
    try:
        result = subprocess.run(
            [*command, f"azurite@{version}"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"installing Azurite with npm took over {NPM_TIMEOUT_S:.0f}s") from None
    if result.returncode != 0 or not launcher.exists():
        detail = (result.stderr + result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"installing Azurite with npm failed: {detail[0][:300]}")
    marker.touch()


class AzuriteService:
    """Azurite's Blob service on loopback: a free port, data in ``workdir``, bounded start-up."""

    name = "azurite"

    def __init__(self, port: int | None = None, version: str = AZURITE_VERSION) -> None:
        self._port = port
        self._version = version

    def start(self, workdir: Path) -> RunningService:
        launcher = ensure_azurite(self._version)
        port = require_free_port(self._port, "azurite") if self._port else free_port()
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = workdir / "azurite.log"
        process = start_detached(
            [
                str(launcher),
                *("--location", str(data)),
                *("--blobHost", LOOPBACK, "--blobPort", str(port)),
                "--skipApiVersionCheck",  # current Azure SDKs send newer versions than 3.35 knows
                "--disableTelemetry",
            ],
            log_path=log,
            cwd=workdir,
        )
        endpoint = f"http://{LOOPBACK}:{port}/{ACCOUNT_NAME}"
        running = RunningService(
            name=self.name,
            pid=process.pid,
            endpoint=endpoint,
            env={ENDPOINT_ENV: endpoint},
            log=str(log),
            workdir=str(workdir),
        )
        wait_until(
            lambda: self.is_ready(running),
            timeout_s=READY_TIMEOUT_S,
            what=f"azurite on {endpoint}",
            pid=process.pid,
            log_path=log,
        )
        return running

    def is_ready(self, running: RunningService) -> bool:
        return azurite_answers(running.endpoint)


def azurite_answers(endpoint: str, timeout_s: float = 2.0) -> bool:
    """True when Azurite answers HTTP at ``endpoint`` (an unsigned request earns a 403)."""
    try:
        with urllib.request.urlopen(f"{endpoint}?comp=list", timeout=timeout_s) as response:
            server = response.headers.get("Server", "")
    except urllib.error.HTTPError as exc:
        server = exc.headers.get("Server", "")
    except (OSError, ValueError):
        return False
    return str(server).startswith("Azurite")
