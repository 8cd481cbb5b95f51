"""The Dockerfile, read without Docker: pinned slim Python 3.11, the project installed as a
wheel from the runtime lock (dependencies in a layer of their own, before the code), non-root,
Bytewax as the exec-form entry point; the build context leaves secrets out. The image itself is
built and run in test_image.py where podman exists."""

from __future__ import annotations

import json
import re
import tomllib

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
    steps = instructions()
    (default,) = [arg.split("=", 1)[1] for op, arg in steps if op == "ARG" and "BASE_IMAGE=" in arg]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", default), default
    bases = [arg.split()[0] for op, arg in steps if op == "FROM"]
    assert bases and all(base == "${BASE_IMAGE}" for base in bases)


def test_a_wheel_installed_from_the_runtime_lock_as_non_root() -> None:
    steps = instructions()
    runs = [arg for op, arg in steps if op == "RUN"]
    assert any("pip wheel --no-deps" in run for run in runs)
    deps = next(i for i, run in enumerate(runs) if "pip install -r constraints-runtime.txt" in run)
    wheel = next(i for i, run in enumerate(runs) if "--no-index -c constraints-runtime.txt" in run)
    assert deps < wheel  # the dependency layer is cached while only the code changes
    users = [arg for op, arg in steps if op == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so runAsNonRoot can verify it
    for op, arg in steps:
        if op == "COPY" and not arg.startswith("--from="):
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source


def pins(name: str) -> dict[str, str]:
    lines = (REPO / name).read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonical(package): version for package, version in pairs}


def canonical(package: str) -> str:
    """A package name as PEP 503 compares them: ``prometheus_client`` is ``prometheus-client``."""
    return re.sub(r"[-_.]+", "-", package).lower()


def test_the_runtime_lock_is_the_dev_lock_without_the_tools() -> None:
    runtime, dev = pins("constraints-runtime.txt"), pins("constraints.txt")
    assert {p: v for p, v in runtime.items() if dev.get(p) != v} == {}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        package, version = requirement.split("==")
        assert runtime[canonical(package)] == version, package
    tools = {"pytest", "hypothesis", "mypy", "ruff", "import-linter", "kubernetes-validate"}
    assert not tools & set(runtime)


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
