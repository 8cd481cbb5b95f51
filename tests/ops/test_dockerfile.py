"""The Dockerfile, read without Docker: pinned slim Python 3.11, installed from the lock,
non-root, Bytewax as the exec-form entry point; the build context leaves secrets out."""

from __future__ import annotations

import json
import re

from tests.ops.conftest import REPO
from tests.ops.test_manifests import by_kind, main_container


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_base_is_a_pinned_slim_python_3_11() -> None:
    (base,) = [arg for op, arg in instructions() if op == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base


def test_installed_from_the_lock_and_run_as_non_root() -> None:
    steps = instructions()
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "pip install -c constraints.txt ." in runs
    users = [arg for op, arg in steps if op == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so runAsNonRoot can verify it
    for op, arg in steps:
        if op == "COPY":
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source


def test_entry_is_bytewax_run_in_exec_form_for_every_stage() -> None:
    steps = dict(instructions())
    assert json.loads(steps["ENTRYPOINT"]) == ["python", "-m", "bytewax.run"]
    assert json.loads(steps["CMD"]) == ["dataflows.ingest:flow"]
    for sts in by_kind("StatefulSet").values():
        (module,) = main_container(sts)["args"]
        assert (REPO / (module.split(":")[0].replace(".", "/") + ".py")).is_file()


def test_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "config.yaml", ".env", "claimx-data"} <= ignored
