"""The production path as deployed, without Docker: the project built as a wheel and installed
into a clean virtualenv with its runtime lock only (what the image does), then the operator
commands and every stage run from there, outside the checkout, against a real broker and the API
simulator over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.lab.process import free_port
from claimx_flow.lab.simulator import RunningSimulator
from tests.isolation import isolated_settings
from tests.probes import wait_ready

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv holding the wheel and the runtime lock's packages, nothing else."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from what the Dockerfile's build stage copies, and only that: a build in the
    # checkout writes its build/ and egg-info there, which another test worker may be reading.
    source = root / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("claimx_flow", "operators", "dataflows", "kafka_pipeline"):
        shutil.copytree(REPO / package, source / package, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root), str(source)])
    (wheel,) = root.glob("claimx_flow-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, "-c", str(REPO / "constraints-runtime.txt"), str(wheel)])
    yield venv


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    return done  # type: ignore[no-any-return]


def outside(settings: Settings, venv: Path) -> dict[str, str]:
    """The environment of a pod: the settings, the venv first on PATH, no checkout anywhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(settings_env(settings))
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["CLAIMX_STACK_DIR"] = "/nonexistent"  # no local stack to fall back on
    env["CLAIMX_HEALTH_PORT"] = "0"
    return env


def test_the_wheel_holds_the_code_and_no_tools(installed: Path, tmp_path: Path) -> None:
    python = str(installed / "bin/python")
    where = run(
        [python, "-c", "import claimx_flow, dataflows, operators; print(claimx_flow.__file__)"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
    )
    assert str(installed) in where.stdout and str(REPO) not in where.stdout
    listed = run([python, "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    for tool in ("pytest", "hypothesis", "mypy", "ruff", "import-linter"):
        assert f"{tool}==" not in listed


EVENTS = 40
"""Events of an export, backfilled onto the raw topic: enough to touch every table and media."""


def test_every_command_and_stage_runs_from_the_wheel(
    installed: Path, kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    """An operator's day from the wheel alone: the checks, an export backfilled onto the raw
    topic, the six stages by the card's bare command (with the pod's recovery variables) until
    every event has landed, ``top`` over their health ports, then the read commands over what
    they wrote and the dry runs of the commands that change things."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", sim=sim)
    env = outside(settings, installed)
    claimx = str(installed / "bin/claimx")

    def cli(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [claimx, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400
        )
        said = f"claimx {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
        assert done.returncode == code and "Traceback" not in done.stderr, said
        return done.stdout

    assert "Operate the ClaimX ingestion pipeline" in cli("--help")
    checked = cli("check")
    assert "FAIL" not in checked, checked
    for read in (["config", "show"], ["topics", "list"], ["api", "check"], ["dlq", "list"]):
        cli(*read)
    cli("lag")

    export = tmp_path / "export.jsonl"
    cli("simulate", "events", "-n", str(EVENTS), "--projects", "4", "-o", str(export))
    topic = settings.claimx_events_topic
    loaded = json.loads(cli("backfill", str(export), "--topic", topic, "-o", "json"))
    assert loaded["lines"] == EVENTS

    cli("recovery", "init")  # what the pod's init container does (image/entrypoint-recovery.sh)
    python = str(installed / "bin/python")
    logs = {stage: tmp_path / f"{stage}.log" for stage in STAGE_NAMES}
    health = {stage: free_port() for stage in STAGE_NAMES}
    stages = {}
    for stage, log in logs.items():
        with log.open("wb") as out:
            stages[stage] = subprocess.Popen(
                [python, "-m", "bytewax.run", f"dataflows.{stage}"],
                cwd=tmp_path,
                env={
                    **env,
                    "CLAIMX_HEALTH_PORT": str(health[stage]),
                    # the pod's recovery volume: the bare command takes it from here
                    "BYTEWAX_RECOVERY_DIRECTORY": str(settings.recovery_dir(stage)),
                    "BYTEWAX_SNAPSHOT_INTERVAL": str(settings.claimx_snapshot_interval_seconds),
                    "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0",
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    try:
        deadline = time.monotonic() + 180
        while len(rows(settings, "claimx_events")) < EVENTS:
            dead = {
                s: logs[s].read_text()[-1500:] for s, p in stages.items() if p.poll() is not None
            }
            assert not dead, dead
            assert time.monotonic() < deadline, "the backfilled events did not land in 180 s"
            time.sleep(1)
        for port in health.values():  # a stage's start checks run while others are busy
            wait_ready(port)
        endpoints = [f"-e{stage}=127.0.0.1:{port}" for stage, port in health.items()]
        top = json.loads(cli("top", "--once", "-o", "json", "--interval", "1", *endpoints))
        for row in top["stages"]:
            assert [p["reachable"] and p["serves"] for p in row["processes"]] == [row["stage"]]
    finally:
        for process in stages.values():
            process.send_signal(signal.SIGTERM)
        codes = {stage: process.wait(60) for stage, process in stages.items()}
    assert set(codes.values()) == {0}, {s: logs[s].read_text()[-1500:] for s in codes}
    for log in logs.values():
        assert "Traceback" not in log.read_text()

    landed = [row["event_id"] for row in rows(settings, "claimx_events")]
    assert len(landed) == len(set(landed)) == EVENTS
    event_id = landed[0]
    traced = json.loads(cli("trace", event_id, "-o", "json"))
    assert traced["verdict"]["state"] == "landed", traced["verdict"]
    assert json.loads(cli("delta", "history", "-t", "claimx_events", "-o", "json"))
    weekly = json.loads(cli("delta", "stats", "--keys", "-o", "json"))  # no key held twice
    (events,) = [t for t in weekly["tables"] if t["name"] == "claimx_events"]
    assert events["rows"] == events["key_check"]["distinct"] == EVENTS
    cli("delta", "vacuum", "-t", "claimx_events", "--dry-run", code=1)  # nothing unreferenced
    resumes = json.loads(cli("recovery", "show", "ingest", "-o", "json"))
    assert topic in {p["topic"] for p in resumes["positions"]}, resumes
    cli("recovery", "reset", "ingest", "--to-latest", "--dry-run", "--assume-stopped")
    cli("files", "sweep", "--dry-run", code=1)  # no upload was killed: nothing to sweep
    cli("dlq", "list", "-o", "json")
    for runbook in (  # its old names, kept as aliases (tests/ops/test_runbook_names.py)
        ["kafka_pipeline.claimx.dlq.cli", "list"],
        ["kafka_pipeline", "--worker", "claimx-enricher", "--dry-run"],
    ):
        done = subprocess.run(
            [python, "-m", *runbook],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]


def rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    path = settings.tables_dir / table
    if not (path / "_delta_log").is_dir():
        return []
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()
