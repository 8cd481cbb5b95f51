"""The production path as deployed, without Docker: the project built as a wheel and installed
into a clean virtualenv with its runtime lock only (what the image does), then every operator
command and every stage run from there, outside the checkout, against a real broker and the API
simulator over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.lab.simulator import RunningSimulator
from tests.isolation import isolated_settings

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
    for package in ("claimx_flow", "operators", "dataflows"):
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


def test_every_command_and_stage_runs_from_the_wheel(
    installed: Path, kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", sim=sim)
    env = outside(settings, installed)
    claimx = str(installed / "bin/claimx")
    assert "Operate the ClaimX ingestion pipeline" in run([claimx, "--help"], env=env).stdout
    checked = run([claimx, "check"], env=env, cwd=tmp_path).stdout
    assert "FAIL" not in checked, checked
    run([claimx, "dlq", "list"], env=env, cwd=tmp_path)
    run([claimx, "lag"], env=env, cwd=tmp_path)

    python = str(installed / "bin/python")
    logs = {stage: tmp_path / f"{stage}.log" for stage in STAGE_NAMES}
    stages = {}
    for stage, log in logs.items():
        with log.open("wb") as out:
            stages[stage] = subprocess.Popen(
                [python, "-m", "bytewax.run", f"dataflows.{stage}"],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    try:
        time.sleep(10)
        running = {stage: p.poll() is None for stage, p in stages.items()}
        assert all(running.values()), {s: logs[s].read_text()[-1500:] for s in running}
    finally:
        for process in stages.values():
            process.send_signal(signal.SIGTERM)
        codes = {stage: process.wait(60) for stage, process in stages.items()}
    assert set(codes.values()) == {0}, {s: logs[s].read_text()[-1500:] for s in codes}
    for log in logs.values():
        assert "Traceback" not in log.read_text()
