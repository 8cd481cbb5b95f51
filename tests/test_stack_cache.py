"""Two processes starting servers at once (two test workers, two shells) share the machine:
they fetch the stack's servers once (the second waits for the first and takes what it fetched),
and never hand out the same port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FETCH = (
    "from claimx_flow.lab.stack.kafka import ensure_kafka_jars\n"
    "print(sorted(p.name for p in ensure_kafka_jars('9.9.9').iterdir()))\n"
)


def test_two_processes_fetch_the_kafka_jars_once(tmp_path: Path) -> None:
    # A stand-in for Maven: the real one would download Kafka from the network. It takes a
    # second, so the two fetches overlap, and counts its runs.
    tools = tmp_path / "bin"
    tools.mkdir()
    runs = tmp_path / "mvn-runs"
    (tools / "mvn").write_text(
        "#!/bin/sh\n"
        f"echo run >> {runs}\n"
        "sleep 1\n"
        'for arg; do case "$arg" in -DoutputDirectory=*) out="${arg#*=}";; esac; done\n'
        'mkdir -p "$out" && echo jar > "$out/kafka.jar"\n'
    )
    (tools / "mvn").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "CLAIMX_CACHE_DIR": str(tmp_path / "cache"),
    }
    fetches = [
        subprocess.Popen([sys.executable, "-c", FETCH], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [fetch.communicate(timeout=60)[0].strip() for fetch in fetches]
    assert [fetch.returncode for fetch in fetches] == [0, 0]
    assert outputs == ["['.complete', 'kafka.jar']"] * 2
    assert runs.read_text().splitlines() == ["run"]


def test_a_port_handed_out_is_not_handed_out_by_another_process_while_it_lives() -> None:
    """Reserved, not bound: the port is for a server that starts later, or one restarted on
    its own ports, and nothing listens on it meanwhile."""
    from claimx_flow.lab.process import _reserve

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from claimx_flow.lab.process import free_port\n"
            "print(free_port(), flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    port = int(holder.stdout.readline())
    try:
        assert _reserve(port) is False
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert _reserve(port) is True  # let go when its holder ended
