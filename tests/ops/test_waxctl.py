"""waxctl: each stage's values name a real dataflow and agree with the Kubernetes manifests;
the script deploys, lists and removes them all (dry run: waxctl is a closed binary)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client, ensure_topics, pipeline_topics
from claimx_flow.lab.pipeline import settings_env
from tests.ops.conftest import REPO
from tests.ops.test_manifests import by_kind, env_of, main_container

VALUES = sorted((REPO / "waxctl/values").glob("*.yaml"))


def values_of(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_every_stage_has_values_naming_an_importable_dataflow(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    assert {p.stem for p in VALUES} == set(STAGES)
    modules = [values_of(p)["dataflow"]["module"] for p in VALUES]
    for path, module in zip(VALUES, modules, strict=True):
        assert (REPO / values_of(path)["dataflow"]["file"]).is_file()
        assert module == f"dataflows.{path.stem}"
    check = (
        "import importlib, sys\n"
        "from bytewax.dataflow import Dataflow\n"
        "for name in sys.argv[1:]:\n"
        "    assert isinstance(importlib.import_module(name).flow, Dataflow), name\n"
    )
    # Importing a stage runs its start-up checks: give it a broker with its topics.
    prefix = f"wax{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        claimx_data_dir=tmp_path,
        **{
            field: f"{prefix}.{default}"
            for field, default in Settings().model_dump().items()
            if field.startswith("claimx_") and field.endswith("_topic")
        },
    )
    ensure_topics(admin_client(settings), pipeline_topics(settings))
    env = {**settings_env(settings), "CLAIMX_HEALTH_PORT": "0"}
    ran = subprocess.run(
        [sys.executable, "-c", check, *modules], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr[-2000:]


def test_values_agree_with_the_statefulsets() -> None:
    sets = by_kind("StatefulSet")
    for path in VALUES:
        values = values_of(path)
        sts = sets[values["dataflow"]["name"]]
        container, env = main_container(sts), env_of(main_container(sts))
        image = values["image"]
        assert container["image"] == f"{image['name']}:{image['tag']}"
        assert values["dataflow"]["processes"] == sts["spec"]["replicas"]
        assert str(values["dataflow"]["workers"]) == env["BYTEWAX_WORKERS_PER_PROCESS"]
        recovery = values["recovery"]
        assert recovery["directory"] == env["BYTEWAX_RECOVERY_DIRECTORY"]
        assert str(recovery["snapshotInterval"]) == env["BYTEWAX_SNAPSHOT_INTERVAL"]
        assert str(recovery["backupInterval"]) == env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]
        assert str(recovery["partsPerProcess"]) == env["CLAIMX_RECOVERY_PARTS_PER_PROCESS"]
        claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
        assert recovery["size"] == claim["storage"]
        assert values["health"]["port"] == STAGES[path.stem].port
        for name, value in values["env"].items():
            assert env.get(name, value) == value  # CACHE_DIR comes from the ConfigMap
        secrets = {
            name: {"secret": ref["secretKeyRef"]["name"], "key": ref["secretKeyRef"]["key"]}
            for name, ref in env.items()
            if isinstance(ref, dict) and "secretKeyRef" in ref
        }
        assert values["envFromSecrets"] == secrets
        assert values["resources"] == container["resources"]


def test_the_script_deploys_lists_and_removes_every_stage() -> None:
    script = str(REPO / "waxctl/deploy.sh")
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}

    def run(action: str) -> list[str]:
        ran = subprocess.run([script, action], env=env, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        return ran.stdout.splitlines()

    deploys = run("deploy")
    assert len(deploys) == len(STAGES)
    for line, path in zip(deploys, sorted(VALUES, key=_order), strict=True):
        values = values_of(path)
        words = line.split()
        assert words[:4] == ["waxctl", "dataflow", "deploy", values["dataflow"]["file"]]
        flags = dict(zip(words[4::2], words[5::2], strict=False))
        assert flags["--name"] == values["dataflow"]["name"]
        assert flags["--processes"] == str(values["dataflow"]["processes"])
        assert flags["--image-tag"] == str(values["image"]["tag"])
        assert "--recovery" in words
    assert run("list") == ["waxctl dataflow list --namespace claimx "]
    deletes = run("delete")
    assert [line.split()[4] for line in deletes] == [f"claimx-{s}" for s in _STAGE_ORDER]


_STAGE_ORDER = ["ingest", "enrich", "download", "upload", "results", "retry"]


def _order(path: Path) -> int:
    return _STAGE_ORDER.index(path.stem)


def test_chart_values_carry_env_secrets_and_the_cache_volume() -> None:
    for path in VALUES:
        ran = subprocess.run(
            [sys.executable, str(REPO / "waxctl/command.py"), "chart-values", str(path)],
            capture_output=True,
            text=True,
        )
        assert ran.returncode == 0, ran.stderr
        chart = yaml.safe_load(ran.stdout)
        names = {e["name"] for e in chart["env"]}
        assert {"CLAIMX_HEALTH_PORT", "KAFKA_SASL_PASSWORD"} <= names
        assert all("value" not in e for e in chart["env"] if e["name"].endswith("PASSWORD"))
        assert ("extraVolumes" in chart) is (path.stem in ("download", "upload"))
