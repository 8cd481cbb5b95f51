"""A stage process knows whether Bytewax runs it with recovery, and where, exactly as
``python -m bytewax.run`` (bytewax 0.21.1, pinned) reads ``-r`` and BYTEWAX_RECOVERY_DIRECTORY:
a stage that thought itself without recovery would skip the checks that keep it from resuming
from another cluster's offsets."""

from __future__ import annotations

import pytest
from bytewax import run

from claimx_flow.startup.recovery import RECOVERY_DIRECTORY_ENV, process_recovery_directory

CASES = [
    ([], None),
    ([], "/var/recovery"),
    ([], ""),
    (["-r", "/a"], None),
    (["-r", "/a"], "/var/recovery"),
    (["-r/a"], None),
    (["--recovery-directory", "/a"], None),
    (["--recovery-directory=/a"], None),
    (["--recovery-dir", "/a"], None),
    (["--rec=/a"], "/var/recovery"),
    (["-r", ""], None),
    (["-w", "2", "-s", "5", "-b", "0", "-r", "/a"], None),
    (["-s", "5", "-b", "0"], "/var/recovery"),
]


@pytest.mark.parametrize(("argv", "env"), CASES)
def test_read_as_bytewax_run_reads_it(
    argv: list[str], env: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv(RECOVERY_DIRECTORY_ENV, raising=False)
    else:
        monkeypatch.setenv(RECOVERY_DIRECTORY_ENV, env)
    parser = run._create_arg_parser()  # reads the variable when made, as bytewax.run's does
    theirs, _ = parser.parse_known_args(["dataflows.ingest", *argv])
    environ = {} if env is None else {RECOVERY_DIRECTORY_ENV: env}
    assert process_recovery_directory(["dataflows.ingest", *argv], environ) == (
        theirs.recovery_directory
    )
