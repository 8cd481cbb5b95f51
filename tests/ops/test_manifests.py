"""The Kubernetes manifests: valid for Kubernetes 1.33, consistent with the code and the
runbook, and their init scripts really lay out a Bytewax cluster."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.delta.writer import RIDE_OUT_BACKOFF_MAX_S, RIDE_OUT_TRY_TIMEOUT_S
from tests.ops.conftest import REPO

K8S = REPO / "k8s"
RUNBOOK_SMALL = {
    "claimx-enricher": ("512Mi", "500m"),
    "claimx-downloader": ("256Mi", "250m"),
    "claimx-uploader": ("256Mi", "250m"),
}
"""RUNBOOK.md, "Resource Sizing", Small Deployment (< 1M events/day): "Enricher: 2 replicas,
512Mi RAM, 500m CPU; Downloader: 2 replicas, 256Mi RAM, 250m CPU; Uploader: 2 replicas, 256Mi
RAM, 250m CPU" (the requests; the replicas are the catalog's processes, docs/kubernetes.md)."""
IDENTITY = yaml.safe_load((REPO / "tests/ops/fixtures/azure_workload_identity.yaml").read_text())
CRD_KINDS = {"PodMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomized(root: Path = K8S) -> list[Path]:
    """The files a kustomization lists, those of the kustomizations it includes too."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    paths = [root / resource for resource in kustomization["resources"]]
    return [f for p in paths for f in (kustomized(p) if p.is_dir() else [p])]


@cache
def _parsed() -> tuple[dict[str, Any], ...]:
    files = [*kustomized(), K8S / "autoscaling/keda-scaledobjects.yaml"]
    return tuple(doc for path in files for doc in documents(path))


def all_objects() -> list[dict[str, Any]]:
    """Every object, parsed once (read-only: tests must not change them)."""
    return list(_parsed())


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in all_objects() if o["kind"] == kind}


def main_container(statefulset: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = statefulset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_manifests_are_rendered_from_the_stage_table() -> None:
    checked = subprocess.run(
        [sys.executable, str(K8S / "render.py"), "--check"], capture_output=True
    )
    assert checked.returncode == 0, checked.stdout


def test_core_objects_pass_strict_validation_for_kubernetes_1_33() -> None:
    core = [p for p in kustomized() if not {d["kind"] for d in documents(p)} & CRD_KINDS]
    assert len(core) >= 9
    validate = Path(sys.executable).parent / "kubernetes-validate"
    ran = subprocess.run(
        [str(validate), "--strict", "-k", "1.33", *map(str, core)],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "ERROR" not in ran.stdout and "WARN" not in ran.stdout, ran.stdout


def test_every_stage_is_a_bytewax_cluster_with_probes_on_its_health_port() -> None:
    sets, services = by_kind("StatefulSet"), by_kind("Service")
    budgets = by_kind("PodDisruptionBudget")
    assert {name.removeprefix("claimx-") for name in sets} == set(STAGES)
    for name, sts in sets.items():
        stage = name.removeprefix("claimx-")
        spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
        container, env = main_container(sts), env_of(main_container(sts))
        assert container["args"] == [f"dataflows.{stage}:flow"]
        # Process id from the pod name, peers from the headless service, recovery per pod.
        assert env["BYTEWAX_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["BYTEWAX_STATEFULSET_NAME"] == name
        assert env["CLAIMX_PROCESSES"] == str(spec["replicas"])
        assert spec["serviceName"] == name and spec["podManagementPolicy"] == "Parallel"
        service = services[name]["spec"]
        assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"]
        assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "recovery"
        recovery_mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["recovery"]
        assert env["BYTEWAX_RECOVERY_DIRECTORY"] == recovery_mount
        init = {c["name"]: c for c in pod["initContainers"]}
        assert "python -m bytewax.recovery" in init["recovery"]["command"][-1]
        # Health on the runbook's port, probed there, and what the PodMonitor scrapes.
        port = STAGES[stage].port
        assert env["CLAIMX_HEALTH_PORT"] == str(port)
        assert {"name": "health", "containerPort": port} in container["ports"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {
            "path": "/health/ready",
            "port": "health",
        }
        # The runbook's sizing (its Small deployment; 512Mi/500m where it sizes nothing); never
        # root.
        worker = STAGES[stage].worker
        memory, cpu = RUNBOOK_SMALL.get(worker, ("512Mi", "500m"))
        assert container["resources"] == {
            "requests": {"memory": memory, "cpu": cpu},
            "limits": {"memory": "2Gi", "cpu": "2"},
        }
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert budgets[name]["spec"]["selector"] == spec["selector"]


@pytest.mark.parametrize("stage", ["enrich", "download"])
def test_a_stage_holding_items_across_epochs_is_given_time_to_drain_them(stage: str) -> None:
    """kubelet sends SIGKILL terminationGracePeriodSeconds after SIGTERM (kubernetes.io,
    "Pod Lifecycle", termination of Pods). Enrich and download finish their items in flight on
    SIGTERM; a rescale starts on fresh recovery volumes from the consumer group, which is behind
    those items, so a drain cut short loses them. Then the last snapshot."""
    statefulset = by_kind("StatefulSet")[STAGES[stage].app]
    snapshot_s = float(env_of(main_container(statefulset))["BYTEWAX_SNAPSHOT_INTERVAL"])
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= drain_s(stage) + 2 * snapshot_s, (grace, drain_s(stage))


@pytest.mark.parametrize("stage", [name for name, spec in STAGES.items() if spec.tables])
def test_a_stage_writing_tables_is_given_time_to_ride_out_a_storage_blip(stage: str) -> None:
    """A commit that meets a OneLake blip retries its request for ``CLAIMX_DELTA_RETRY_SECONDS``
    (once per commit). A pod stopped meanwhile (a rollout) must not be killed before that
    commit ends and the last snapshot is taken: after a drain (above), what was drained would
    be lost on a rescale. delta-rs's object store checks the retry time before it pauses, so a
    last try may start a pause after it, and take its own timeout."""
    config = by_kind("ConfigMap")["claimx-config"]["data"]
    retries = float(config["CLAIMX_DELTA_RETRY_SECONDS"])
    ride_out = retries + RIDE_OUT_BACKOFF_MAX_S + RIDE_OUT_TRY_TIMEOUT_S
    statefulset = by_kind("StatefulSet")[STAGES[stage].app]
    snapshot_s = float(env_of(main_container(statefulset))["BYTEWAX_SNAPSHOT_INTERVAL"])
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= drain_s(stage) + ride_out + 2 * snapshot_s, (grace, ride_out)


def drain_s(stage: str) -> float:
    """The longest drain under the ConfigMap's settings: enrich's reads each end within one
    task's deadline (two API calls, each with every retry); download's tasks in flight (every
    slot busy and a batch queued) take their slots in turn, each within five fetch deadlines
    (a fetch and two URL refreshes with a fetch each). Other stages hold nothing."""
    config = by_kind("ConfigMap")["claimx-config"]["data"]

    def setting(name: str, default: float) -> float:
        return float(config.get(name, default))

    defaults = Settings.model_construct()
    if stage == "enrich":
        calls = setting("CLAIMX_API_MAX_RETRIES", defaults.claimx_api_max_retries) + 1
        return (
            2 * calls * setting("CLAIMX_API_TIMEOUT_SECONDS", defaults.claimx_api_timeout_seconds)
        )
    if stage == "download":
        slots = setting("DOWNLOAD_CONCURRENCY", defaults.download_concurrency)
        queued = setting("DOWNLOAD_BATCH_SIZE", defaults.download_batch_size)
        task = 5 * setting("DOWNLOAD_TIMEOUT_SECONDS", defaults.download_timeout_seconds)
        return math.ceil((slots + queued) / slots) * task
    return 0.0


def test_secrets_are_referenced_never_written() -> None:
    assert "Secret" not in {o["kind"] for o in all_objects()}
    for sts in by_kind("StatefulSet").values():
        env = env_of(main_container(sts))
        for name in ("KAFKA_SASL_PASSWORD", "CLAIMX_API_PASSWORD"):
            if name in env:
                assert set(env[name]) == {"secretKeyRef"}
        assert main_container(sts)["envFrom"] == [{"configMapRef": {"name": "claimx-config"}}]
    config = by_kind("ConfigMap")["claimx-config"]["data"]
    assert not any("PASSWORD" in key or "TOKEN" in key or "KEY" in key for key in config)


def test_download_and_upload_share_the_cache_volume_at_cache_dir() -> None:
    claim = documents(K8S / "download-cache-pvc.yaml")[0]["metadata"]["name"]
    cache_dir = by_kind("ConfigMap")["claimx-config"]["data"]["CACHE_DIR"]
    for name, sts in by_kind("StatefulSet").items():
        volumes = {
            v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
            for v in sts["spec"]["template"]["spec"]["volumes"]
        }
        mounts = {m["name"]: m["mountPath"] for m in main_container(sts)["volumeMounts"]}
        shared = name in ("claimx-download", "claimx-upload")
        assert (volumes.get("download-cache") == claim) is shared
        assert (mounts.get("download-cache") == cache_dir) is shared


def test_custom_resources_have_the_shape_their_operators_expect() -> None:
    pods = {
        name: sts["spec"]["template"]["metadata"]["labels"]
        for name, sts in by_kind("StatefulSet").items()
    }
    (monitor,) = by_kind("PodMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(selector.items() <= labels.items() for labels in pods.values())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["honorLabels"]) == (
        "health",
        "/metrics",
        True,
    )
    # Prometheus' Kubernetes discovery names a pod label __meta_kubernetes_pod_label_<name>, with
    # every character that is not a letter, digit or underscore replaced by an underscore; the
    # relabeling must name the pod templates' stage label that way, and the values are stages.
    (relabel,) = endpoint["relabelings"]
    (source,) = relabel["sourceLabels"]
    stage_labels = {
        name
        for labels in pods.values()
        for name in labels
        if re.sub(r"[^A-Za-z0-9_]", "_", name)
        == source.removeprefix("__meta_kubernetes_pod_label_")
    }
    assert source.startswith("__meta_kubernetes_pod_label_") and len(stage_labels) == 1
    (label,) = stage_labels
    assert {labels[label] for labels in pods.values()} == set(STAGES)
    assert (relabel["targetLabel"], relabel["action"]) == ("stage", "replace")
    for scaled in by_kind("ScaledObject").values():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        target = scaled["spec"]["scaleTargetRef"]
        sts = by_kind("StatefulSet")[target["name"]]
        assert target["kind"] == "StatefulSet"
        # A Bytewax mesh is fixed at start: only idle (0) or the full cluster.
        assert scaled["spec"]["idleReplicaCount"] == 0
        assert scaled["spec"]["minReplicaCount"] == scaled["spec"]["maxReplicaCount"]
        assert scaled["spec"]["maxReplicaCount"] == sts["spec"]["replicas"]
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metadata"]["consumerGroup"].startswith("claimx-")
        assert trigger["authenticationRef"]["name"] in by_kind("TriggerAuthentication")


def test_every_stage_pod_runs_with_azure_workload_identity() -> None:
    """The label and annotation Azure's webhook reads (fixture, with its sources): every pod
    carries the label and names a ServiceAccount that carries the client-id annotation."""
    accounts = by_kind("ServiceAccount")
    label, annotation = IDENTITY["pod"]["label"], IDENTITY["service_account"]["annotation"]
    assert by_kind("StatefulSet")
    for sts in by_kind("StatefulSet").values():
        template = sts["spec"]["template"]
        assert template["metadata"]["labels"][label] == IDENTITY["pod"]["label_value"]
        account = accounts[template["spec"]["serviceAccountName"]]
        assert account["metadata"]["annotations"][annotation]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "identity" in kustomization["resources"]
    # The operator's client id reaches that annotation (run by kustomize in the next test).
    identity = yaml.safe_load((K8S / "identity/kustomization.yaml").read_text())
    (replacement,) = identity["replacements"]
    (config,) = documents(K8S / "identity/client-id.yaml")
    assert replacement["source"] == {
        "kind": "ConfigMap",
        "name": config["metadata"]["name"],
        "fieldPath": "data.clientId",
    }
    assert config["metadata"]["annotations"] == {"config.kubernetes.io/local-config": "true"}
    (target,) = replacement["targets"]
    assert target["fieldPaths"] == [f"metadata.annotations.[{annotation}]"]
    assert target["select"]["name"] in accounts


def test_the_operator_sets_the_client_id_in_one_place(tmp_path: Path) -> None:
    """kustomize (kubectl's) copies clientId from k8s/identity/client-id.yaml into the
    ServiceAccount's annotation and leaves that ConfigMap out of what it applies."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize) is not installed")
    identity = tmp_path / "identity"
    shutil.copytree(K8S / "identity", identity)
    client_id = "11111111-2222-3333-4444-555555555555"
    config = identity / "client-id.yaml"
    loaded = yaml.safe_load(config.read_text())
    loaded["data"]["clientId"] = client_id
    config.write_text(yaml.safe_dump(loaded))
    built = subprocess.run([kubectl, "kustomize", str(identity)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    objects = [o for o in yaml.safe_load_all(built.stdout) if o]
    assert [o["kind"] for o in objects] == ["ServiceAccount"]
    (account,) = objects
    assert account["metadata"]["namespace"] == "claimx"
    assert account["metadata"]["annotations"] == {
        IDENTITY["service_account"]["annotation"]: client_id
    }


def run_init(script: str, env: dict[str, str], code: int = 0) -> str:
    """The init script run as its container would, to the exit ``code`` expected; its stderr."""
    ran = subprocess.run(
        ["sh", "-c", script],
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
    )
    assert ran.returncode == code, ran.stdout + ran.stderr
    return ran.stderr


def image_entrypoint() -> list[str]:
    """The image's ENTRYPOINT, which a container without ``command`` runs."""
    (line,) = [
        x for x in (REPO / "Dockerfile").read_text().splitlines() if x.startswith("ENTRYPOINT")
    ]
    entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT"))
    return entrypoint


class Pod:
    """One pod of a StatefulSet on this machine: each volume a folder under ``root``, and the
    downward API's fields filled in as the kubelet would."""

    def __init__(self, root: Path, statefulset: dict[str, Any], index: int) -> None:
        self.root = root
        self.name = f"{statefulset['metadata']['name']}-{index}"
        self.fields = {"metadata.name": self.name, "metadata.namespace": "claimx"}

    def path(self, text: str, container: dict[str, Any]) -> str:
        """``text`` with each mount path in it moved to its volume's folder, in one pass."""
        folders = {m["mountPath"]: self.root / m["name"] for m in container["volumeMounts"]}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        mounts = "|".join(re.escape(p) for p in sorted(folders, key=len, reverse=True))
        return re.sub(f"({mounts})(?![\\w.-])", lambda m: str(folders[m[1]]), text)

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's own variables (secrets left out: nothing here reads them)."""
        env = {}
        for entry in container["env"]:
            if "value" in entry:
                env[entry["name"]] = self.path(entry["value"], container)
            elif "fieldRef" in entry["valueFrom"]:
                env[entry["name"]] = self.fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        return env


@pytest.mark.parametrize("stage", ["enrich"])
def test_init_scripts_lay_out_a_cluster_bytewax_accepts(stage: str, tmp_path: Path) -> None:
    """Both init containers of every pod, then the main container's command: each run for real
    with the manifest's own variables and the volumes as folders under tmp."""
    sts = by_kind("StatefulSet")[f"claimx-{stage}"]
    spec = sts["spec"]["template"]["spec"]
    init = {c["name"]: c for c in spec["initContainers"]}
    processes = int(env_of(main_container(sts))["CLAIMX_PROCESSES"])
    assert processes >= 2  # a cluster, so that the pod index really is the process id
    pods = [Pod(tmp_path / f"pod{index}", sts, index) for index in range(processes)]
    for pod in pods:
        for name in ["peers", "recovery", "recovery"]:  # a restarted pod keeps its partitions
            container = init[name]
            run_init(pod.path(container["command"][-1], container), pod.env(container))
        hostfile = Path(pod.env(main_container(sts))["BYTEWAX_HOSTFILE_PATH"])
        assert hostfile.read_text().split() == [
            f"claimx-{stage}-{i}.claimx-{stage}.claimx.svc.cluster.local:9999"
            for i in range(processes)
        ]
    for index, pod in enumerate(pods):
        parts = sorted(p.name for p in (pod.root / "recovery").iterdir())
        assert parts == [f"part-{2 * index}.sqlite3", f"part-{2 * index + 1}.sqlite3"]

    # The main container's command and variables, with a tiny flow for the stage's: pod i must
    # be process i of the cluster, resume from the partitions its init made, and start with a
    # working directory it cannot write to (the root filesystem is read-only; this test may run
    # as root, so a folder where Bytewax's API writes dataflow.json stands for that).
    (tmp_path / "tiny.py").write_text(
        "import bytewax.operators as op\n"
        "from bytewax.dataflow import Dataflow\n"
        "from bytewax.testing import TestingSource\n"
        "flow = Dataflow('tiny')\n"
        "op.inspect('out', op.input('in', flow, TestingSource(range(4))))\n"
    )
    readonly = tmp_path / "app"
    (readonly / "dataflow.json").mkdir(parents=True)
    from claimx_flow.lab.process import free_port

    # The pods' DNS names resolve only in the cluster, and each pod has its own network.
    addresses = [f"127.0.0.1:{free_port()}" for _ in pods]
    container = main_container(sts)
    command = [*container.get("command", image_entrypoint()), *container["args"]]
    assert command == ["python", "-m", "bytewax.run", f"dataflows.{stage}:flow"]
    runs = []
    for pod in pods:
        env = pod.env(main_container(sts))
        Path(env["BYTEWAX_HOSTFILE_PATH"]).write_text("\n".join(addresses) + "\n")
        env["BYTEWAX_DATAFLOW_API_PORT"] = str(free_port())
        env["PYTHONPATH"] = str(tmp_path)
        runs.append(
            subprocess.Popen(
                [sys.executable, *command[1:3], "tiny:flow"],
                cwd=readonly,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * processes, outputs
    assert "MissingPartitions" not in "".join(outputs)
    assert all((pod.root / "tmp/dataflow.json").is_file() for pod in pods)


def test_init_scripts_refuse_a_rescale_onto_the_old_volumes(tmp_path: Path) -> None:
    """A redeploy with another process count onto the recovery volumes of the last one, and a
    bare ``kubectl scale`` past the process count: each pod's init stops with the way out,
    before Bytewax would crash-loop on partitions of two counts or a mesh without the pod."""
    sts = by_kind("StatefulSet")["claimx-enrich"]
    init = {c["name"]: c for c in sts["spec"]["template"]["spec"]["initContainers"]}
    pod = Pod(tmp_path, sts, 1)
    recovery, peers = init["recovery"], init["peers"]
    env = pod.env(recovery)
    run_init(recovery["command"][-1], {**env, "CLAIMX_PROCESSES": "3"})
    rescaled = {**env, "CLAIMX_PROCESSES": "4"}
    said = run_init(recovery["command"][-1], rescaled, code=1)
    assert "made for a count of 6, and this stage now needs 8 (4 processes)" in said
    assert "delete its claims recovery-claimx-enrich-*" in said
    assert sorted(p.name for p in (tmp_path / "recovery").iterdir()) == [
        "part-2.sqlite3",
        "part-3.sqlite3",
    ]  # left as they were

    script = pod.path(peers["command"][-1], peers)
    run_init(script, {**pod.env(peers), "CLAIMX_PROCESSES": "2"})
    said = run_init(script, {**pod.env(peers), "CLAIMX_PROCESSES": "1"}, code=1)
    assert "pod claimx-enrich-1 is past this stage's 1 processes" in said
