"""The ``claimx`` command loads each sub-command only when it runs; what ``--help`` lists for
one without loading it must be what the command itself says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from claimx_flow.cli import COMMANDS, load_command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    own = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
    assert own == COMMANDS[name].help


def test_help_loads_no_sub_command() -> None:
    """``claimx --help`` imports none of the sub-commands (and so none of the lab)."""
    probe = (
        "import sys; from claimx_flow.cli import app\n"
        "try: app(['--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('claimx_flow.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "claimx_flow.lab" not in loaded and "_cmd" not in loaded and "dlq" not in loaded


@pytest.mark.parametrize("command", [["lag"], ["check"]])
def test_an_unreachable_broker_is_one_red_line_and_exit_2(
    command: list[str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # discard port: nothing listens
        "CLAIMX_API_URL": "http://127.0.0.1:9/service",
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
        "CLAIMX_DATA_DIR": str(tmp_path / "data"),
    }
    claimx = Path(sys.executable).with_name("claimx")
    done = subprocess.run(
        [str(claimx), *command], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Kafka" in errors[0]
    assert len(done.stderr.strip().splitlines()) == 1
