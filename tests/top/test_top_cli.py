"""``claimx top --once`` with nothing to watch: every endpoint and Kafka reported unreachable
in the document, exit code 2 (Kafka is a broken peer), never a traceback; with Kafka up and
no stage answering, exit code 1; without a terminal, a snapshot after each interval."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.cli import app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_answers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
    }
    endpoints = tmp_path / "endpoints"
    endpoints.write_text("".join(f"{s} 127.0.0.1:{closed_port()}\n" for s in STAGE_NAMES))
    claimx = str(Path(sys.executable).with_name("claimx"))
    options = ["--once", "-o", "json", "--interval", "0.2", "--timeout", "1"]
    done = subprocess.run(
        [claimx, "top", *options, "--endpoints-file", str(endpoints)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: Kafka:"), done.stderr  # the red line, with JSON too
    document = json.loads(done.stdout)
    assert "127.0.0.1:9" in document["kafka"]["error"]
    assert [row["stage"] for row in document["stages"]] == list(STAGE_NAMES)
    for row in document["stages"]:
        (process,) = row["processes"]
        assert process["reachable"] is False and process["error"]
        assert row["lag"] is None


def test_json_needs_once_and_endpoints_must_parse(tmp_path: Path) -> None:
    env = {"CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}
    result = CliRunner().invoke(app, ["top", "-o", "JSON"], env=env)  # any case, as elsewhere
    assert result.exit_code == 2 and "--output json needs --once" in result.output
    result = CliRunner().invoke(app, ["top", "--once", "-e", "enrich=nowhere"], env=env)
    assert result.exit_code == 2 and "not host:port" in result.output


def test_without_a_terminal_it_prints_a_snapshot_each_interval(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``claimx top | tee top.log``: one view per interval, not nothing until Ctrl-C."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
        "CLAIMX_ENV": "local",
    }
    claimx = str(Path(sys.executable).with_name("claimx"))
    endpoint = ["-e", f"ingest=127.0.0.1:{closed_port()}", "--timeout", "0.5"]
    once = subprocess.run(
        [claimx, "top", "--once", "--interval", "0.2", *endpoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert once.returncode == 1, once.stderr  # Kafka answers; the stage does not
    process = subprocess.Popen(
        [claimx, "top", "--interval", "0.3", *endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        output, _ = process.communicate(timeout=6)
    except subprocess.TimeoutExpired:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert output.count("claimx top ·") >= 2, output  # a title per snapshot
