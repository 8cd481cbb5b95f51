"""A stage process loads what it runs and nothing of the lab (simulator, local stack, chaos,
bench, demo) or the command line: checked in a fresh interpreter per stage, after the stage's
whole start-up (settings, preflight against a real broker, health server) and its build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from claimx_flow import catalog
from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.lab.pipeline import settings_env
from tests.isolation import isolated_settings

REPO = Path(__file__).resolve().parents[2]
LOADED = """
import json, sys
from bytewax.dataflow import Dataflow
import {module} as stage
assert isinstance(stage.flow, Dataflow)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_process_imports_no_lab_module(
    stage: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    env = {**settings_env(settings), "CLAIMX_HEALTH_PORT": "0"}
    ran = subprocess.run(
        [sys.executable, "-c", LOADED.format(module=f"dataflows.{stage}")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    modules = json.loads(ran.stdout.splitlines()[-1])
    assert f"dataflows.{stage}" in modules
    unwanted = [m for m in modules if m.startswith(("claimx_flow.lab", "claimx_flow.cli", "typer"))]
    assert not unwanted, f"{stage} loaded {unwanted}"
    # Nor the clients of peers it never calls: the Azure SDK alone was 27 MiB of every
    # process, most of the retry stage's memory at start.
    spec = catalog.stage(stage)
    if not spec.stores_files:
        assert not [m for m in modules if m.startswith("azure")], stage
    if not spec.calls_api:
        assert "claimx_flow.api.client" not in modules, stage
