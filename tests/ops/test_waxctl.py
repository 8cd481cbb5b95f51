"""waxctl: the deploy script calls waxctl only as waxctl 0.12.0 documents it and hands the Bytewax
chart only values the chart reads, both held to tests/ops/fixtures/bytewax_deploy_contract.yaml
(each fact there has its source); the values name real dataflows and agree with the manifests.

waxctl is a closed binary no registry ships: ``waxctl/deploy.sh`` runs for real here against a
stand-in (tests/ops/waxctl_standin.py) that rejects any flag the contract does not list."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimx_flow.catalog import STAGE_NAMES, STAGES
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client, ensure_topics, pipeline_topics
from claimx_flow.lab.pipeline import settings_env
from tests.ops.conftest import REPO
from tests.ops.test_manifests import by_kind, env_of, main_container

VALUES: dict[str, Path] = {stage: REPO / "waxctl/values" / f"{stage}.yaml" for stage in STAGE_NAMES}
CONTRACT: dict[str, Any] = yaml.safe_load(
    (REPO / "tests/ops/fixtures/bytewax_deploy_contract.yaml").read_text()
)
IDENTITY: dict[str, Any] = yaml.safe_load(
    (REPO / "tests/ops/fixtures/azure_workload_identity.yaml").read_text()
)
CHART = CONTRACT["helm_chart"]
CHART_STAGES = [stage for stage in STAGE_NAMES if not STAGES[stage].uses_cache]
"""What deploy.sh deploys: the chart cannot mount the shared cache download and upload need."""


def values_of(stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES[stage].read_text())
    return loaded


def deploy_sh(
    args: list[str], tmp: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``waxctl/deploy.sh ARGS`` with the stand-in first on PATH; its result and the calls."""
    bin_dir = tmp / f"bin-{uuid.uuid4().hex[:6]}"
    bin_dir.mkdir()
    standin = bin_dir / "waxctl"
    standin.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests/ops/waxctl_standin.py"}" "$@"\n'
    )
    standin.chmod(0o755)
    calls = bin_dir / "calls.jsonl"
    ran = subprocess.run(
        [str(REPO / "waxctl/deploy.sh"), *args],
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "PRINT")},
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHON": sys.executable,
            "WAXCTL_CALLS": str(calls),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return ran, [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The calls one real ``deploy.sh deploy`` made (once for this module)."""
    ran, calls = deploy_sh(["deploy"], tmp_path_factory.mktemp("waxctl"))
    assert ran.returncode == 0, ran.stderr
    return calls


def one(call: dict[str, Any], flag: str) -> str:
    (value,) = call["flags"][flag]
    assert isinstance(value, str)
    return value


# (a) The script, run for real against a waxctl that knows only the documented flags.


def test_the_standin_rejects_what_waxctl_does_not_document(tmp_path: Path) -> None:
    """The stand-in is strict, so a passing deploy means something: the flags of the old script
    (--image-name, --values as chart values), a flag with no value and a bad int all fail."""
    standin = [sys.executable, str(REPO / "tests/ops/waxctl_standin.py")]
    env = {**os.environ, "WAXCTL_CALLS": str(tmp_path / "calls.jsonl")}
    base = ["dataflow", "deploy", "dataflows/ingest.py"]
    for bad, named in [
        (["--image-name", "x"], "--image-name"),
        (["--env", "A=1"], "--env"),
        (["--output", "yaml"], "--output"),
        (["-N"], "--name"),
        (["-p", "two"], "--processes"),
        (["-o", "xml"], "--output-format"),
        (["--recovery-parts"], "--recovery-parts"),
    ]:
        ran = subprocess.run(
            [*standin, *base, *bad], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert ran.returncode == 2 and named in ran.stderr, (bad, ran.stderr)
    ran = subprocess.run(
        [*standin, "dataflow", "delete", "--name", "x"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2 and "--name" in ran.stderr
    assert not (tmp_path / "calls.jsonl").exists()


def test_deploy_makes_one_documented_call_per_catalog_stage(deployed: list[dict[str, Any]]) -> None:
    calls = deployed
    assert [c["command"] for c in calls] == ["deploy"] * len(CHART_STAGES)
    sets = by_kind("StatefulSet")
    documented = {f["long"] for f in CONTRACT["waxctl"]["deploy_flags"]}
    for stage, call in zip(CHART_STAGES, calls, strict=True):
        spec, sts = STAGES[stage], sets[f"claimx-{stage}"]
        env = env_of(main_container(sts))
        assert call["positionals"] == [f"dataflows/{stage}.py"]
        assert (
            Path(call["cwd"]) / call["positionals"][0]
        ).resolve() == REPO / "dataflows" / f"{stage}.py"
        assert set(call["flags"]) <= documented
        assert one(call, "--name") == spec.app
        assert one(call, "--namespace") == "claimx"
        assert one(call, "--processes") == str(spec.processes) == str(sts["spec"]["replicas"])
        assert one(call, "--workers") == env["BYTEWAX_WORKERS_PER_PROCESS"]
        image = f"{one(call, '--image-repository')}:{one(call, '--image-tag')}"
        assert image == main_container(sts)["image"]
        assert call["flags"]["--recovery"] == ["true"]
        parts_per_process = int(env["CLAIMX_RECOVERY_PARTS_PER_PROCESS"])
        assert one(call, "--recovery-parts") == str(spec.processes * parts_per_process)
        assert one(call, "--recovery-snapshot-interval") == env["BYTEWAX_SNAPSHOT_INTERVAL"]
        assert one(call, "--recovery-backup-interval") == env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]
        claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
        assert one(call, "--recovery-size") == claim["storage"]
        assert "--dry-run" not in call["flags"] and "--yes" not in call["flags"]
        assert isinstance(call.get("chart_values"), dict), "no -V chart-values file"


def test_deploy_yes_dry_run_and_image_override(tmp_path: Path) -> None:
    ran, calls = deploy_sh(
        ["deploy", "--yes"],
        tmp_path,
        DRY_RUN="1",
        IMAGE_REPOSITORY="acr.example/claimx-flow",
        IMAGE_TAG="9.9.9",
    )
    assert ran.returncode == 0, ran.stderr
    assert len(calls) == len(CHART_STAGES)
    assert "left out: download, upload (no shared cache under the chart)" in ran.stderr
    for call in calls:
        assert call["flags"]["--yes"] == ["true"] and call["flags"]["--dry-run"] == ["true"]
        assert one(call, "--output-format") == "yaml"
        assert one(call, "--image-repository") == "acr.example/claimx-flow"
        assert one(call, "--image-tag") == "9.9.9"
    ran, calls = deploy_sh(["deploy", "--force"], tmp_path)
    assert ran.returncode == 2 and calls == []


def test_list_and_delete_use_documented_forms(tmp_path: Path) -> None:
    ran, calls = deploy_sh(["list"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    (call,) = calls
    assert call["command"] == "list" and call["flags"] == {"--namespace": ["claimx"]}
    ran, calls = deploy_sh(["delete"], tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert [c["positionals"] for c in calls] == [[f"claimx-{s}"] for s in CHART_STAGES]
    assert all(c["flags"] == {"--namespace": ["claimx"], "--yes": ["true"]} for c in calls)
    ran, calls = deploy_sh(["delete"], tmp_path, DRY_RUN="1")  # without --yes waxctl only reports
    assert ran.returncode == 0, ran.stderr
    assert all("--yes" not in c["flags"] for c in calls) and len(calls) == len(CHART_STAGES)


# (b) The chart-values files the script wrote, against the chart's values tree.


def _check_tree(value: Any, schema: Any, path: str, problems: list[str]) -> None:
    kinds = {"map": dict, "list": list, "string": str, "int": int, "bool": bool}
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: a map in the chart, here {type(value).__name__}")
            return
        for key, item in value.items():
            if key not in schema:
                problems.append(f"{path}.{key}: not a key of the chart's values")
            else:
                _check_tree(item, schema[key], f"{path}.{key}", problems)
        return
    kind = kinds[schema]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        problems.append(f"{path}: the chart reads a {schema}, here {type(value).__name__}")


def test_chart_values_use_only_keys_the_chart_reads_with_their_types(
    deployed: list[dict[str, Any]],
) -> None:
    for stage, call in zip(CHART_STAGES, deployed, strict=True):
        chart = call["chart_values"]
        problems: list[str] = []
        _check_tree(chart, CHART["values_keys"], stage, problems)
        for key, fields in CHART["values_list_items"].items():
            for item in chart.get(key, []):
                _check_tree(item, fields, f"{stage}.{key}[]", problems)
        assert not problems, problems
        # What waxctl's flags set is left to them: one source for image, processes, recovery.
        assert not {"image", "configuration"} & set(chart)


def test_chart_env_is_a_map_the_template_can_write(deployed: list[dict[str, Any]]) -> None:
    """``env`` values land in ``value: "{{ tpl (print $value) $ }}"``; nothing the chart sets
    itself is set again; no secret travels in it."""
    set_by_chart = set(CHART["container"]["env"]) | set(
        CHART["container"]["env_added_in_0_8_0_job"]
    )
    for call in deployed:
        env = call["chart_values"]["env"]
        for name, value in env.items():
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), name
            assert isinstance(value, str), (name, value)
            assert '"' not in value and "\\" not in value and "{{" not in value, (name, value)
        assert not set(env) & set_by_chart
        assert not [n for n in env if re.search(r"PASSWORD|USERNAME|TOKEN|SECRET|_KEY", n)]


def test_chart_values_fit_the_chart_container(deployed: list[dict[str, Any]]) -> None:
    """Writable paths only where the chart mounts something; our uid; secrets loaded whole."""
    writable = [path.rstrip("/") for path in CHART["container"]["volume_mounts"].values()]
    user = [
        ln.split()[1]
        for ln in (REPO / "Dockerfile").read_text().splitlines()
        if ln.startswith("USER ")
    ]
    uid = int(user[-1].split(":")[0])
    for stage, call in zip(CHART_STAGES, deployed, strict=True):
        chart, env = call["chart_values"], call["chart_values"]["env"]
        for name in ("CLAIMX_DATA_DIR", "TMPDIR"):
            assert any(env[name] == w or env[name].startswith(w + "/") for w in writable), name
        assert env["CLAIMX_HEALTH_PORT"] == str(STAGES[stage].port)
        assert chart["podSecurityContext"]["runAsUser"] == uid
        assert chart["podSecurityContext"]["runAsNonRoot"] is True
        assert chart["securityContext"]["readOnlyRootFilesystem"] is True
        secrets = values_of(stage)["secrets"]
        assert chart["envFromSecrets"] == [{"name": s, "optional": True} for s in secrets]
        # No pretending: extraVolumeMounts reach the init-hostfile container only, so the cache
        # cannot be mounted through them; CACHE_DIR stays where k8s/ mounts the shared claim.
        assert "extraVolumeMounts" not in chart
    assert CHART["values_rendering"]["extraVolumeMounts"]["mounted_into"] == ["init-hostfile"]
    # Which is why the stages that need it are left out, and their values files say so.
    for stage in set(STAGE_NAMES) - set(CHART_STAGES):
        env = values_of(stage)["chart"]["env"]
        assert not any(env["CACHE_DIR"].startswith(w + "/") for w in writable)
        assert "NO SHARED DOWNLOAD CACHE" in VALUES[stage].read_text()


def test_chart_values_carry_workload_identity(deployed: list[dict[str, Any]]) -> None:
    accounts = by_kind("ServiceAccount")
    for call in deployed:
        chart = call["chart_values"]
        assert chart["podLabels"][IDENTITY["pod"]["label"]] == IDENTITY["pod"]["label_value"]
        # Not created per release (six releases cannot own one object): k8s/identity makes it.
        assert chart["serviceAccount"]["create"] is False
        account = accounts[chart["serviceAccount"]["name"]]
        assert IDENTITY["service_account"]["annotation"] in account["metadata"]["annotations"]


# (c) The values against the manifests they are rendered with.


def test_values_agree_with_the_statefulsets() -> None:
    sets = by_kind("StatefulSet")
    config = by_kind("ConfigMap")["claimx-config"]["data"]
    for stage in STAGE_NAMES:
        values, sts = values_of(stage), sets[f"claimx-{stage}"]
        container, pod = main_container(sts), sts["spec"]["template"]["spec"]
        env = env_of(container)
        deploy, chart = values["deploy"], values["chart"]
        assert container["image"] == f"{deploy['imageRepository']}:{deploy['imageTag']}"
        assert deploy["processes"] == sts["spec"]["replicas"]
        assert chart["resources"] == container["resources"]
        assert chart["podSecurityContext"] == pod["securityContext"]
        assert chart["securityContext"] == container["securityContext"]
        assert chart["serviceAccount"]["name"] == pod["serviceAccountName"]
        assert chart["podLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
        # The shared settings are the ConfigMap's, bar the data directory (read-only root).
        shared = {k: v for k, v in chart["env"].items() if k in config}
        assert {k: v for k, v in shared.items() if k != "CLAIMX_DATA_DIR"} == {
            k: v for k, v in config.items() if k != "CLAIMX_DATA_DIR"
        }
        assert chart["env"]["CLAIMX_HEALTH_PORT"] == env["CLAIMX_HEALTH_PORT"]
        assert chart["env"]["CLAIMX_SNAPSHOT_INTERVAL_SECONDS"] == env["BYTEWAX_SNAPSHOT_INTERVAL"]
        assert (
            chart["env"]["CLAIMX_BACKUP_INTERVAL_SECONDS"]
            == env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]
        )
        # The variables the secrets must hold are the ones the manifests take from secrets.
        from_secrets = {n for n, v in env.items() if isinstance(v, dict) and "secretKeyRef" in v}
        assert {k for keys in values["secrets"].values() for k in keys} == from_secrets


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_chart_values_command_prints_the_chart_part(stage: str) -> None:
    ran = subprocess.run(
        [sys.executable, str(REPO / "waxctl/command.py"), "chart-values", str(VALUES[stage])],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert yaml.safe_load(ran.stdout) == values_of(stage)["chart"]


def test_every_stage_has_values_naming_an_importable_dataflow(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The file waxctl ships names the module image/entrypoint.sh runs: dataflows.<stem>."""
    assert {p.stem for p in (REPO / "waxctl/values").glob("*.yaml")} == set(STAGES)
    modules = []
    for stage in STAGE_NAMES:
        path = Path(values_of(stage)["deploy"]["path"])
        assert (REPO / path).is_file() and path.parent == Path("dataflows")
        modules.append(f"dataflows.{path.stem}")
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


def test_the_documented_apply_of_the_cache_stages_brings_what_their_pods_need() -> None:
    """docs/kubernetes.md's commands for the two stages deploy.sh leaves out: exactly their
    StatefulSets, and every object their pods name (ConfigMap, claim, ServiceAccount)."""
    from tests.ops.test_manifests import K8S, documents, kustomized

    text = (REPO / "docs/kubernetes.md").read_text().replace("\\\n", " ")
    (applies,) = [ln for ln in text.splitlines() if "apply -f" in ln and "download" in ln]
    files = [REPO / f for f in re.findall(r"-f (\S+)", applies)]
    assert "kubectl apply -k k8s/identity" in text
    objects = [doc for path in [*files, *kustomized(K8S / "identity")] for doc in documents(path)]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    sets = [o for o in objects if o["kind"] == "StatefulSet"]
    left_out = sorted(set(STAGE_NAMES) - set(CHART_STAGES))
    assert sorted(s["metadata"]["name"] for s in sets) == [f"claimx-{s}" for s in left_out]
    for sts in sets:
        pod = sts["spec"]["template"]["spec"]
        assert ("ServiceAccount", pod["serviceAccountName"]) in names
        for ref in main_container(sts)["envFrom"]:
            assert ("ConfigMap", ref["configMapRef"]["name"]) in names
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
        assert ("Service", sts["spec"]["serviceName"]) in names
