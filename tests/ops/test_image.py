"""The real image, built and run without a Docker daemon (podman, vfs storage, runc), where the
tools exist: `make image-test` installs them (Debian's podman, buildah, runc, mmdebstrap,
uidmap) and runs this; elsewhere it is skipped. The base is a Debian root filesystem made with
mmdebstrap and passed as BASE_IMAGE (no registry here); it runs Debian's Python 3.11.2.

Inside the image: `claimx --help`, `check`, `dlq list` and `lag`, and every stage for a few
seconds, against the test's broker and simulator on the host network."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claimx_flow.catalog import STAGE_NAMES
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.lab.simulator import RunningSimulator
from tests.isolation import isolated_settings

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("podman", "mmdebstrap", "runc")
IMAGE = "localhost/claimx-flow:test"
BASE = "localhost/claimx-base:test"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

pytestmark = [
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS),
        reason="podman, mmdebstrap and runc are needed (`make image-test` installs them)",
    ),
    pytest.mark.timeout(1800),
]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Podman configured for this sandbox: storage of its own, runc, the host's network (so no
    CNI bridge or iptables chain is left behind), ulimits within the sandbox's own."""
    root = tmp_path_factory.mktemp("podman")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
    )
    (root / "containers.conf").write_text(
        '[containers]\nnetns = "host"\n'
        f'default_ulimits = ["nofile={hard}:{hard}", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{root}/tmp"\n'
    )
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
    }
    try:
        yield env
    finally:
        subprocess.run(["podman", "rmi", "-a", "-f"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman: dict[str, str]) -> str:
    base_tar = REPO / ".cache" / "claimx-base-bookworm.tar"
    if not base_tar.exists():
        base_tar.parent.mkdir(parents=True, exist_ok=True)
        partial = base_tar.with_name("claimx-base-bookworm.partial.tar")  # the suffix picks tar
        packages = "--include=python3,python3-venv,ca-certificates"
        run(["mmdebstrap", "--variant=minbase", packages, "bookworm", str(partial)])
        partial.rename(base_tar)
    run(["podman", "import", str(base_tar), BASE], env=podman)
    build = ["podman", "build", "--pull=never", "--build-arg", f"BASE_IMAGE={BASE}"]
    run([*build, "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-t", IMAGE, str(REPO)], env=podman)
    return IMAGE


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command[:4]}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    return done  # type: ignore[no-any-return]


def test_commands_and_stages_run_inside_the_image(
    image: str, podman: dict[str, str], kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", sim=sim)
    values = {
        k: v for k, v in settings_env(settings).items() if k.startswith(("CLAIMX_", "KAFKA_"))
    }
    values.update({"CLAIMX_DATA_DIR": "/var/lib/claimx", "CLAIMX_HEALTH_PORT": "0"})
    envs = [flag for k, v in values.items() for flag in ("-e", f"{k}={v}")]
    container = ["podman", "run", "--rm", "--network", "host", *envs]

    def claimx(*args: str) -> str:
        return run([*container, "--entrypoint", "claimx", image, *args], env=podman).stdout

    assert "Operate the ClaimX ingestion pipeline" in claimx("--help")
    assert "FAIL" not in claimx("check")
    claimx("dlq", "list")
    claimx("lag")
    for runbook in (  # the runbook's old names (tests/ops/test_runbook_names.py)
        ["kafka_pipeline.claimx.dlq.cli", "list"],
        ["kafka_pipeline", "--worker", "claimx-ingester", "--dry-run"],
    ):
        run([*container, "--entrypoint", "python", image, "-m", *runbook], env=podman)

    names = {stage: f"claimx-test-{stage}" for stage in STAGE_NAMES}
    for stage, name in names.items():
        detached = ["podman", "run", "-d", "--name", name, "--network", "host", *envs]
        run([*detached, image, f"dataflows.{stage}:flow"], env=podman)
    try:
        time.sleep(15)
        for name in names.values():
            state = run(["podman", "inspect", "-f", "{{.State.Running}}", name], env=podman)
            logs = subprocess.run(["podman", "logs", name], env=podman, capture_output=True)
            assert state.stdout.strip() == "true", logs.stdout[-1500:] + logs.stderr[-1500:]
        for name in names.values():  # SIGTERM: each stage drains and exits 0
            run(["podman", "stop", "-t", "60", name], env=podman)
        for stage, name in names.items():
            code = run(["podman", "inspect", "-f", "{{.State.ExitCode}}", name], env=podman)
            assert code.stdout.strip() == "0", stage
    finally:
        for name in names.values():
            subprocess.run(["podman", "rm", "-f", name], env=podman, capture_output=True)
