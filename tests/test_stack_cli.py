"""``claimx stack`` as a developer uses it: real processes, clear failures, nothing left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claimx_flow.lab.process import is_alive

REPO = Path(__file__).resolve().parent.parent
CLAIMX = [sys.executable, "-m", "claimx_flow"]


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLAIMX, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLAIMX_"))}
    env["CLAIMX_STACK_DIR"] = str(tmp_path / "stack")
    env["CLAIMX_CACHE_DIR"] = os.environ.get("CLAIMX_CACHE_DIR", str(REPO / ".cache"))
    env["COLUMNS"] = "160"
    return env


def test_up_topics_down_leaves_nothing_behind(stack_env: dict[str, str], tmp_path: Path) -> None:
    up = run(["stack", "up"], stack_env, tmp_path)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "stack" / "state.json").read_text())
    kafka = state["kafka"]
    try:
        assert f"kafka ready at {kafka['endpoint']}" in up.stdout
        env_file = (tmp_path / "stack" / "env").read_text()
        assert f"export KAFKA_BOOTSTRAP_SERVERS={kafka['endpoint']}" in env_file

        # A second `up` finds it running and starts nothing new.
        again = run(["stack", "up"], stack_env, tmp_path)
        assert again.returncode == 0
        assert (
            json.loads((tmp_path / "stack" / "state.json").read_text())["kafka"]["pid"]
            == kafka["pid"]
        )

        status = run(["stack", "status"], stack_env, tmp_path)
        assert status.returncode == 0 and "ready" in status.stdout
        document = json.loads(run(["stack", "status", "-o", "json"], stack_env, tmp_path).stdout)
        assert {s["service"]: s["state"] for s in document["services"]} == {
            "kafka": "ready",
            "simulator": "ready",
        }

        # No `source` needed: commands find the running stack on their own.
        created = run(["topics", "create", "--partitions", "2"], stack_env, tmp_path)
        assert created.returncode == 0, created.stderr
        assert "16 created" in created.stdout
        listed = run(["topics", "list"], stack_env, tmp_path)
        assert listed.returncode == 0, listed.stderr
        for topic in (
            "claimx.events.raw",
            "claimx.enrichment.pending.retry.40m",
            "claimx.downloads.pending.retry.2400s",
            "claimx.downloads.dlq",
        ):
            assert topic in listed.stdout
    finally:
        refused = run(["stack", "down"], stack_env, tmp_path)  # no terminal to ask on, no --yes
        still = is_alive(kafka["pid"])
        down = run(["stack", "down", "--yes"], stack_env, tmp_path)
    assert refused.returncode == 2 and "refusing to stop the stack" in refused.stderr
    assert kafka["workdir"] in refused.stderr.replace("\n", "")  # the plan, before refusing
    assert still
    assert down.returncode == 0
    assert "stopped: kafka, simulator" in down.stdout
    assert "simulator" in state and not is_alive(state["simulator"]["pid"])
    deadline = time.monotonic() + 10
    while is_alive(kafka["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_alive(kafka["pid"])
    assert not Path(kafka["workdir"]).exists()
    assert run(["stack", "status"], stack_env, tmp_path).returncode == 1


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_no_java_is_a_clear_error(stack_env: dict[str, str], tmp_path: Path) -> None:
    stack_env["PATH"] = str(tmp_path / "empty-bin")
    started = time.monotonic()
    result = run(["stack", "up"], stack_env, tmp_path, timeout=60)
    assert "Java 17+ not found" in _one_line_error(result)
    assert time.monotonic() - started < 30


def test_taken_port_is_a_clear_error(stack_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack_env["CLAIMX_KAFKA_PORT"] = str(taken.getsockname()[1])
        result = run(["stack", "up"], stack_env, tmp_path, timeout=60)
    assert "already in use" in _one_line_error(result)


def test_missing_jars_without_maven_is_a_clear_error(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    java_only = tmp_path / "java-only"
    java_only.mkdir()
    java = subprocess.run(["which", "java"], capture_output=True, text=True).stdout.strip()
    (java_only / "java").symlink_to(os.path.realpath(java))
    stack_env["PATH"] = str(java_only)
    stack_env["CLAIMX_CACHE_DIR"] = str(tmp_path / "empty-cache")
    result = run(["stack", "up"], stack_env, tmp_path, timeout=60)
    assert "Maven (mvn) not found" in _one_line_error(result)


def test_external_cluster_starts_nothing(
    stack_env: dict[str, str], tmp_path: Path, kafka_bootstrap: str
) -> None:
    stack_env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    stack_env["CLAIMX_API_URL"] = "http://127.0.0.1:9/none"
    up = run(["stack", "up"], stack_env, tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        assert "external Kafka" in up.stdout
        status = run(["stack", "status"], stack_env, tmp_path)
        assert "external" in status.stdout and "ready" in status.stdout
    finally:
        assert "nothing was running" in run(["stack", "down"], stack_env, tmp_path).stdout


def test_down_after_a_failed_up_clears_what_it_left(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A failed `stack up` leaves an empty state, which makes later commands here local: `stack
    down` must clear it though nothing runs, and without asking."""
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "state.json").write_text("{}")
    (stack / "env").write_text("")
    down = run(["stack", "down"], stack_env, tmp_path)
    assert down.returncode == 0 and "nothing was running" in down.stdout
    assert not (stack / "state.json").exists() and not (stack / "env").exists()
