"""The DLQ commands in a real terminal (tmux, 120x40): legible tables, and purge's prompt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from claimx_flow.errors import ErrorCategory
from tests.dlq.helpers import Pipeline, failure, put_letters, read_all

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (apt-get install -y tmux) so no real terminal can be captured",
)

DONE = "__CLAIMX_DONE__"


class Terminal:
    """One detached tmux server of our own (its own socket), killed at the end."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.socket = f"claimx-dlq-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.session = ""

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def run(self, *args: str) -> None:
        """Start ``claimx dlq …`` in a fresh 120x40 session; the pane stays after it ends."""
        self.session = f"s{uuid.uuid4().hex[:6]}"
        exports = [
            flag
            for k, v in self.env.items()
            if k.startswith(("KAFKA_", "CLAIMX_"))
            for flag in ("-e", f"{k}={v}")
        ]
        command = " ".join([sys.executable, "-m", "claimx_flow", "dlq", *args])
        self.tmux(
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            "120",
            "-y",
            "40",
            *exports,
            "sh",
            "-c",
            f"{command}; echo {DONE} $?; sleep 120",
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", self.session)

    def wait_for(self, text: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on the terminal:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminal(pipeline: Pipeline, tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(pipeline.env, tmp_path)
    yield term
    term.close()


def _fill(pipeline: Pipeline) -> None:
    origin = pipeline["enrichment.pending"]
    put_letters(
        pipeline,
        "enrichment.dlq",
        [
            failure("evt_1", origin_topic=origin),
            failure(
                "evt_2",
                origin_topic=origin,
                category=ErrorCategory.PERMANENT,
                error_class="ProjectNotFound",
                message="project p9 is gone",
            ),
        ],
    )


def test_list_and_inspect_render_as_tables_in_a_terminal(
    pipeline: Pipeline, terminal: Terminal
) -> None:
    _fill(pipeline)

    terminal.run("list")
    listed = terminal.wait_for(DONE)

    assert f"{DONE} 0" in listed
    for text in (
        "╭",
        "╰",
        "│",
        "DLQ / topic",
        "messages",
        "oldest (UTC)",
        "newest (UTC)",
        "categories",
        "enrichment",
        pipeline["enrichment.dlq"],
        "top errors in enrichment",
        "ProjectNotFound",
        "project p9 is gone",
    ):
        assert text in listed, text
    assert max(len(line) for line in listed.splitlines()) <= 120

    terminal.run("inspect", "enrichment")
    inspected = terminal.wait_for(DONE)

    assert f"{DONE} 0" in inspected
    for text in (
        "╭─ enrichment · partition",
        "offset",
        "event id",
        "evt_1",
        "evt_2",
        "error class",
        "ProjectNotFound",
        "replay count",
        "attempts",
        "claimx.error_category",
        "trace-id",
        "╰",
    ):
        assert text in inspected, text


def test_purge_asks_on_the_terminal_and_acts_on_the_answer(
    pipeline: Pipeline, terminal: Terminal
) -> None:
    _fill(pipeline)

    terminal.run("purge", "enrichment")
    prompt = terminal.wait_for("Permanently delete 2 record(s)")
    assert "to remove" in prompt  # the plan is shown before the question
    terminal.tmux("send-keys", "-t", terminal.session, "y", "Enter")
    done = terminal.wait_for(DONE)

    assert f"{DONE} 0" in done and "removed 2 record(s)" in done
    assert read_all(pipeline.bootstrap, pipeline["enrichment.dlq"]) == []
