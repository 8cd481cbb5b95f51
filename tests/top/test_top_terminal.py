"""``claimx top`` in a real terminal (tmux, 200x50): a row for every stage, the endpoint that
does not answer in red, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from claimx_flow.catalog import STAGE_NAMES
from tests.top.conftest import CLAIMX, Watched

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (make tools installs it) so no real terminal can be captured",
)

DONE = "__CLAIMX_TOP_DONE__"
RED = re.compile(r"\x1b\[[0-9;]*(?:3[1]|9[1]|38;5;(?:1|9|124|160|196))[;m]")


class Terminal:
    """A detached tmux server of our own (its own socket), killed at the end."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"claimx-top-{uuid.uuid4().hex[:8]}"
        self.session = f"s{uuid.uuid4().hex[:6]}"
        self.cwd = cwd

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: str) -> None:
        self.tmux(
            "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50",
            "-e", "TERM=xterm-256color", "sh", "-c", command,
        )  # fmt: skip

    def screen(self, colours: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", self.session)

    def wait_for(self, found: str | re.Pattern[str], timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if (found in screen) if isinstance(found, str) else found.search(screen):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{found!r} not on the screen after {timeout_s}s:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def test_every_stage_row_the_unreachable_one_in_red_and_ctrl_c_quits(
    watched: Watched, tmp_path: Path
) -> None:
    env_file = watched.env_script(tmp_path / "env.sh")
    flags = " ".join(watched.flags)
    command = (
        # tmux may pass COLUMNS=80 on (the pane is 200 wide); the shell outlives Ctrl-C (a trap,
        # not an ignore, so top itself still gets the SIGINT) to report top's exit code.
        f". {env_file}; unset COLUMNS LINES; trap : INT; "
        f"{CLAIMX} top --interval 1 {flags}; echo {DONE} $?; sleep 60"
    )
    terminal = Terminal(tmp_path)
    terminal.start(command)
    try:
        # The second refresh has rates ("/s"): the view keeps going past its first scrape.
        screen = terminal.wait_for(re.compile(r"[0-9]/s"), 45)
        rows = {
            stage: [line for line in screen.splitlines() if re.match(rf"\W*{stage}\b", line)]
            for stage in STAGE_NAMES
        }
        assert all(rows.values()), screen
        for stage in STAGE_NAMES:
            assert watched.endpoints[stage] in rows[stage][0], (stage, screen)
        assert "unreachable" in rows["results"][0]
        assert all(
            "ready" in rows[s][0] and "not ready" not in rows[s][0] for s in rows if s != "results"
        )
        coloured = terminal.screen(colours=True)
        (line,) = [row for row in coloured.splitlines() if "unreachable" in row]
        before = line[: line.index("unreachable")]
        assert RED.search(before), repr(line)  # the style that paints "unreachable"
        terminal.tmux("send-keys", "-t", terminal.session, "C-c")
        screen = terminal.wait_for(DONE, 20)
        assert f"{DONE} 0" in screen, screen
        assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    finally:
        terminal.kill()
