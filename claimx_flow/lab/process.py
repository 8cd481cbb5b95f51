"""Starting, waiting for and stopping local server processes, with every wait bounded."""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from claimx_flow.errors import StackError

LOOPBACK = "127.0.0.1"


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
RESERVATIONS = Path(tempfile.gettempdir()) / "claimx-ports"
"""One lock file per port handed out, held while the process that chose it lives."""
_reserved: dict[int, int] = {}


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now, below the
    kernel's ephemeral range when it can.

    A port from that range (what binding port 0 gives) can be handed to any outgoing
    connection, a Kafka client's say, between this check and the listener's own bind: a
    Bytewax process of a three-process rescale test once failed with "Address already in use".
    Outgoing connections never take a port below the range, and this process never hands the
    same one out twice. Nor does another process on the machine (two test workers, a stack
    started beside a test run): a port is handed out only with its reservation, a lock another
    process cannot take while this one lives, so a port chosen but not yet listened on, or left
    free on purpose (a broker restarted on its own ports), is not chosen twice."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low) if low > 2048 else 0
        if port in _handed_out or (port and not _reserve(port)):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                _release(port)  # taken by a process that reserves nothing
                continue
            found = int(sock.getsockname()[1])
        _handed_out.add(found)
        return found
    raise StackError("no free TCP port on the loopback address")


def _reserve(port: int) -> bool:
    """Take ``port``'s lock for the life of this process; False if another process holds it.

    A ``flock``: the kernel lets it go when its holder dies, however it dies. Where the lock
    folder cannot be used (another user's, read-only), the port is taken unreserved, as before.
    """
    try:
        RESERVATIONS.mkdir(exist_ok=True)
        folder = RESERVATIONS.stat()
        if folder.st_mode & 0o7777 != 0o1777 and folder.st_uid == os.getuid():
            RESERVATIONS.chmod(0o1777)  # every user's processes reserve here (umask aside)
        # Read-only: a lock file another user made (0644) still takes a lock.
        descriptor = os.open(RESERVATIONS / str(port), os.O_CREAT | os.O_RDONLY, 0o666)
    except OSError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    except OSError:  # a filesystem without locks: unreserved, as where the folder is unusable
        os.close(descriptor)
        return True
    _reserved[port] = descriptor
    return True


def _release(port: int) -> None:
    descriptor = _reserved.pop(port, None)
    if descriptor is not None:
        os.close(descriptor)


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # not Linux: the kernel's choice


def require_free_port(port: int, what: str) -> int:
    """Fail at once, with a clear message, when a fixed port is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            raise StackError(f"{what}: port {port} on {LOOPBACK} is already in use") from None
    return port


TIE_ENV = "CLAIMX_CHILDREN_DIE_WITH_PARENT"


def start_detached(
    command: Sequence[str],
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    *,
    die_with_parent: bool | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (its own process group, for stopping it whole).

    It outlives the command that started it (``claimx stack up``) unless ``die_with_parent``
    (default: the ``CLAIMX_CHILDREN_DIE_WITH_PARENT`` variable, which the test suite sets):
    then the kernel kills it when its parent dies, so a killed test run leaves no server behind.
    """
    if die_with_parent is None:
        die_with_parent = os.environ.get(TIE_ENV) == "1"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when my parent thread exits (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def is_alive(pid: int) -> bool:
    """True while the process runs; reaps it first if it is our own finished child."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def stop_process_group(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace_s``."""
    stop_process_groups([pid], grace_s)


def stop_process_groups(pids: list[int], grace_s: float = 20.0) -> None:
    """Stop several process groups together: all are asked first, then all are waited for.

    Processes of one Bytewax cluster only finish together, so asking them one at a time would
    make each wait out its grace period for the next.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = [pid for pid in pids if _signal_group(pid, sig)]
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline:
            running = [pid for pid in running if is_alive(pid) or _group_alive(pid)]
            time.sleep(0.1)
        if not running:
            return
    stuck = [pid for pid in pids if is_alive(pid)]
    if stuck:
        raise StackError(f"processes {stuck} did not stop after SIGKILL")


def _signal_group(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Members may be zombies we cannot reap (not our children); count only live ones.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    pid: int | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.25,
) -> None:
    """Poll ``ready`` until it is true; fail clearly on timeout or when ``pid`` dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if pid is not None and not is_alive(pid):
            raise StackError(f"{what} exited during start-up{_log_hint(log_path)}")
        time.sleep(interval_s)
    raise StackError(f"{what} not ready after {timeout_s:.0f}s{_log_hint(log_path)}")


def _log_hint(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "Exception" in line]
    last = (errors or lines or [""])[-1].strip()
    return f": {last[:300]} (log: {log_path})" if last else f" (log: {log_path})"
