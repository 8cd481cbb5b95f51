"""The image's entry scripts, run for real with ``sh`` the way the Bytewax Helm chart starts them
(tests/ops/fixtures/bytewax_deploy_contract.yaml: ``sh -c "sh ./entrypoint.sh"`` and
``sh -c "sh ./entrypoint-recovery.sh"`` in the image's WORKDIR, with the env the chart sets).

The recovery script runs the real ``python -m bytewax.recovery``. The dataflow entrypoint runs
against a stand-in ``python`` that records how it was started: what it must prove is which
module it starts and how; that every stage really starts from the installed package is tested
elsewhere (tests/ops/test_waxctl.py imports each dataflows.<stage>.flow against a real broker,
and the image-parity test runs every stage from the built wheel)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimx_flow.catalog import STAGE_NAMES
from tests.ops.conftest import REPO

IMAGE = REPO / "image"
CONTRACT = yaml.safe_load((REPO / "tests/ops/fixtures/bytewax_deploy_contract.yaml").read_text())
CHART = CONTRACT["helm_chart"]
VENV_BIN = Path(sys.executable).parent


def test_the_chart_commands_name_these_scripts() -> None:
    assert CHART["container"]["command"] == ["sh", "-c", "sh ./entrypoint.sh"]
    (recovery,) = [c for c in CHART["container"]["init_containers"] if c["name"] == "init-recovery"]
    assert recovery["command"] == ["sh", "-c", "sh ./entrypoint-recovery.sh"]
    assert recovery["env"] == ["BYTEWAX_RECOVERY_PARTS", "BYTEWAX_RECOVERY_DIRECTORY"]
    for script in ("entrypoint.sh", "entrypoint-recovery.sh"):
        text = (IMAGE / script).read_text()
        assert text.startswith("#!/bin/sh\n")
        assert subprocess.run(["sh", "-n", str(IMAGE / script)]).returncode == 0


# init-recovery


def recover(directory: Path, parts: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    chart_env = {"BYTEWAX_RECOVERY_DIRECTORY": str(directory)}
    if parts is not None:
        chart_env["BYTEWAX_RECOVERY_PARTS"] = parts
    return subprocess.run(
        ["sh", "-c", "sh ./entrypoint-recovery.sh"],
        cwd=IMAGE,
        env={"PATH": f"{VENV_BIN}:{os.environ['PATH']}", **chart_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_recovery_makes_the_parts_once_and_bytewax_resumes_from_them(tmp_path: Path) -> None:
    directory = tmp_path / "var/recovery"
    ran = recover(directory, "4")
    assert ran.returncode == 0, ran.stderr
    names = sorted(p.name for p in directory.iterdir())
    assert names == [f"part-{i}.sqlite3" for i in range(4)]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}
    again = recover(directory, "4")
    assert again.returncode == 0, again.stderr
    assert "already" in again.stdout
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()} == before

    # The partitions are what bytewax.run resumes from (one process holding all of them).
    (tmp_path / "tiny.py").write_text(
        "import bytewax.operators as op\n"
        "from bytewax.dataflow import Dataflow\n"
        "from bytewax.testing import TestingSource\n"
        "flow = Dataflow('tiny')\n"
        "op.inspect('out', op.input('in', flow, TestingSource(range(3))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "tiny:flow"],
        cwd=tmp_path,
        env={
            **os.environ,
            "BYTEWAX_RECOVERY_DIRECTORY": str(directory),
            "BYTEWAX_SNAPSHOT_INTERVAL": "1",
            "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "MissingPartitions" not in run.stderr


def test_recovery_completes_a_partial_set_without_replacing_a_part(tmp_path: Path) -> None:
    """A pod sharing the volume may have moved a part in already: it is kept as it is."""
    directory = tmp_path / "recovery"
    directory.mkdir()
    (directory / "part-2.sqlite3").write_text("in use")
    ran = recover(directory, "3")
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in directory.iterdir()) == [f"part-{i}.sqlite3" for i in range(3)]
    assert (directory / "part-2.sqlite3").read_text() == "in use"


@pytest.mark.parametrize("parts", [None, "", "0", "four", "-1"])
def test_recovery_refuses_a_missing_or_bad_count(tmp_path: Path, parts: str | None) -> None:
    ran = recover(tmp_path / "recovery", parts)
    assert ran.returncode == 2
    assert len(ran.stderr.strip().splitlines()) == 1 and "BYTEWAX_RECOVERY_PARTS" in ran.stderr
    assert not (tmp_path / "recovery").exists()


# The dataflow container


def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A ``python`` that records argv, cwd, pids and the Bytewax/ClaimX environment."""
    bin_dir, log = tmp_path / "bin", tmp_path / "python-calls.jsonl"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python"
    python.write_text(
        f"#!{sys.executable}\n"
        "import json, os, signal, sys, time\n"
        f"LOG = {str(log)!r}\n"
        "def note(record):\n"
        "    with open(LOG, 'a') as f:\n"
        "        f.write(json.dumps(record) + '\\n')\n"
        "def term(*_):\n"
        "    note({'signal': 'TERM'})\n"
        "    sys.exit(0)\n"
        "if os.environ.get('FAKE_PYTHON_RUN_UNTIL_TERM'):\n"
        "    signal.signal(signal.SIGTERM, term)\n"
        "note({'argv': sys.argv[1:], 'cwd': os.getcwd(), 'pid': os.getpid(),\n"
        "      'ppid': os.getppid(), 'env': {k: v for k, v in os.environ.items()\n"
        "      if k.startswith(('BYTEWAX_', 'CLAIMX_'))}})\n"
        "if os.environ.get('FAKE_PYTHON_RUN_UNTIL_TERM'):\n"
        "    time.sleep(60)\n"
        "sys.exit(int(os.environ.get('FAKE_PYTHON_EXIT', '0')))\n"
    )
    python.chmod(0o755)
    return bin_dir, log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def chart_env(stage: str, workdir: Path) -> dict[str, str]:
    """What the chart's StatefulSet sets (the contract's list, values as its template writes
    them for our deploy), plus the stage's chart-values env map."""
    values = yaml.safe_load((REPO / "waxctl/values" / f"{stage}.yaml").read_text())
    env = {
        "PYTHONUNBUFFERED": "1",
        "BYTEWAX_PYTHON_FILE_PATH": f"/var/bytewax/{stage}.py",
        "BYTEWAX_WORKDIR": str(workdir),
        "BYTEWAX_WORKERS_PER_PROCESS": "1",
        "BYTEWAX_POD_NAME": f"claimx-{stage}-0",
        "BYTEWAX_REPLICAS": str(values["deploy"]["processes"]),
        "BYTEWAX_KEEP_CONTAINER_ALIVE": "false",
        "BYTEWAX_HOSTFILE_PATH": "/etc/bytewax/hostfile.txt",
        "BYTEWAX_STATEFULSET_NAME": f"claimx-{stage}",
        "BYTEWAX_DATAFLOW_API_ENABLED": "true",
        "BYTEWAX_RECOVERY_DIRECTORY": "/var/recovery",
    }
    assert set(env) - {"PYTHONUNBUFFERED"} <= set(CHART["container"]["env"])
    return {**env, **values["chart"]["env"]}


def start(
    bin_dir: Path, env: dict[str, str], command: list[str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command or ["sh", "-c", "sh ./entrypoint.sh"],
        cwd=IMAGE,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_the_chart_start_runs_the_installed_stage_module(stage: str, tmp_path: Path) -> None:
    bin_dir, log = fake_python(tmp_path)
    workdir = tmp_path / "var-bytewax"
    workdir.mkdir()
    shell = start(bin_dir, chart_env(stage, workdir))
    _out, err = shell.communicate(timeout=30)
    assert shell.returncode == 0, err
    (call,) = calls(log)
    assert call["argv"] == ["-m", "bytewax.run", f"dataflows.{stage}:flow"]
    assert Path(call["cwd"]).resolve() == workdir.resolve()
    # The chart's StatefulSet sets the recovery directory only; bytewax.run needs both intervals.
    assert call["env"]["BYTEWAX_SNAPSHOT_INTERVAL"] == "5"
    assert call["env"]["BYTEWAX_RECOVERY_BACKUP_INTERVAL"] == "0"
    # exec: no shell of ours between the chart's `sh -c` and Python. Debian's dash (the image's
    # /bin/sh) does not exec the last command of `sh -c`, so under the chart Python is the child
    # of that shell, not PID 1 (docs/kubernetes.md: the chart's pods stop by SIGKILL after 10 s).
    assert call["ppid"] == shell.pid


def test_import_str_and_the_chart_intervals_win(tmp_path: Path) -> None:
    bin_dir, log = fake_python(tmp_path)
    env = {
        **chart_env("ingest", tmp_path),
        "BYTEWAX_IMPORT_STR": "dataflows.results:flow",
        "BYTEWAX_SNAPSHOT_INTERVAL": "30",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "60",
    }
    shell = start(bin_dir, env)
    assert shell.wait(timeout=30) == 0
    (call,) = calls(log)
    assert call["argv"] == ["-m", "bytewax.run", "dataflows.results:flow"]
    assert call["env"]["BYTEWAX_SNAPSHOT_INTERVAL"] == "30"
    assert call["env"]["BYTEWAX_RECOVERY_BACKUP_INTERVAL"] == "60"


def test_no_recovery_directory_no_intervals_and_the_exit_status_passes_through(
    tmp_path: Path,
) -> None:
    bin_dir, log = fake_python(tmp_path)
    env = {"BYTEWAX_PYTHON_FILE_PATH": "/var/bytewax/enrich.py", "FAKE_PYTHON_EXIT": "3"}
    shell = start(bin_dir, env)
    assert shell.wait(timeout=30) == 3
    (call,) = calls(log)
    assert call["argv"] == ["-m", "bytewax.run", "dataflows.enrich:flow"]
    assert "BYTEWAX_SNAPSHOT_INTERVAL" not in call["env"]


@pytest.mark.parametrize(
    "env",
    [{}, {"BYTEWAX_PYTHON_FILE_PATH": ""}, {"BYTEWAX_PYTHON_FILE_PATH": "/var/bytewax/x.tar"}],
)
def test_without_a_dataflow_it_exits_2_with_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    bin_dir, log = fake_python(tmp_path)
    shell = start(bin_dir, env)
    _out, err = shell.communicate(timeout=30)
    assert shell.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "entrypoint.sh:" in err
    assert calls(log) == []


def wait_for(log: Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(calls(log)) < count:
        assert time.monotonic() < deadline, "the stand-in python never ran"
        time.sleep(0.05)


def test_keep_alive_stays_up_after_the_dataflow_and_stops_on_sigterm(tmp_path: Path) -> None:
    bin_dir, log = fake_python(tmp_path)
    env = {
        "BYTEWAX_PYTHON_FILE_PATH": "/var/bytewax/retry.py",
        "BYTEWAX_KEEP_CONTAINER_ALIVE": "true",
        "FAKE_PYTHON_EXIT": "1",
    }
    shell = start(bin_dir, env, ["sh", "./entrypoint.sh"])
    wait_for(log, 1)
    time.sleep(1.5)
    assert shell.poll() is None, "ended although BYTEWAX_KEEP_CONTAINER_ALIVE=true"
    shell.send_signal(signal.SIGTERM)
    assert shell.wait(timeout=10) == 143
    _, err = shell.communicate()
    assert "dataflow ended (exit 1)" in err


def test_keep_alive_passes_sigterm_on_to_a_running_dataflow(tmp_path: Path) -> None:
    bin_dir, log = fake_python(tmp_path)
    env = {
        "BYTEWAX_PYTHON_FILE_PATH": "/var/bytewax/retry.py",
        "BYTEWAX_KEEP_CONTAINER_ALIVE": "true",
        "FAKE_PYTHON_RUN_UNTIL_TERM": "1",
    }
    shell = start(bin_dir, env, ["sh", "./entrypoint.sh"])
    wait_for(log, 1)  # recorded once its handler is in place
    shell.send_signal(signal.SIGTERM)
    assert shell.wait(timeout=10) == 143
    wait_for(log, 2)
    assert calls(log)[1] == {"signal": "TERM"}
