"""Turn a stage's values file into its ``waxctl dataflow deploy`` command and chart values.

    python waxctl/command.py deploy waxctl/values/enrich.yaml        # the command, one arg a line
    python waxctl/command.py chart-values waxctl/values/enrich.yaml  # Helm values for --values
    python waxctl/command.py stages                                  # the stages, from the catalog

waxctl is a closed binary no registry ships, so this is the part we can test offline: the
values files are rendered from the same table as k8s/ (``python k8s/render.py``), and the
tests check each command names a real dataflow and agrees with the manifests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from claimx_flow.catalog import STAGE_NAMES

NAMESPACE = "claimx"


def load(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path}: not a mapping"
    return values


def deploy_command(values: dict[str, Any], chart_values: str) -> list[str]:
    flow, image, recovery = values["dataflow"], values["image"], values["recovery"]
    command = [
        "waxctl", "dataflow", "deploy", flow["file"],
        "--name", flow["name"],
        "--namespace", NAMESPACE,
        "--processes", str(flow["processes"]),
        "--workers", str(flow["workers"]),
        "--image-name", image["name"],
        "--image-tag", str(image["tag"]),
        "--values", chart_values,
    ]  # fmt: skip
    if recovery["enabled"]:
        command += [
            "--recovery",
            "--recovery-snapshot-interval", str(recovery["snapshotInterval"]),
            "--recovery-backup-interval", str(recovery["backupInterval"]),
            "--recovery-size", str(recovery["size"]),
        ]  # fmt: skip
    return command


def chart_values(values: dict[str, Any]) -> dict[str, Any]:
    """The Bytewax Helm chart values waxctl passes on: environment, secrets, resources, cache."""
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in values["env"].items()]
    env += [
        {"name": "CLAIMX_RECOVERY_PARTS_PER_PROCESS",
         "value": str(values["recovery"]["partsPerProcess"])},
    ]  # fmt: skip
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {**ref_of(ref), "optional": True}}}
        for name, ref in values["envFromSecrets"].items()
    ]
    chart: dict[str, Any] = {
        "env": env,
        "envFrom": [{"configMapRef": {"name": values["envFromConfigMap"]}}],
        "resources": values["resources"],
    }
    if "CACHE_DIR" in values["env"]:
        chart["extraVolumes"] = [
            {"name": "download-cache",
             "persistentVolumeClaim": {"claimName": "claimx-download-cache"}},
        ]  # fmt: skip
        chart["extraVolumeMounts"] = [
            {"name": "download-cache", "mountPath": values["env"]["CACHE_DIR"]}
        ]
    return chart


def ref_of(ref: dict[str, str]) -> dict[str, str]:
    return {"name": ref["secret"], "key": ref["key"]}


def main(argv: list[str]) -> int:
    if argv == ["stages"]:
        print("\n".join(STAGE_NAMES))
        return 0
    if len(argv) != 2 or argv[0] not in ("deploy", "chart-values"):
        print(__doc__)
        return 2
    values = load(Path(argv[1]))
    if argv[0] == "chart-values":
        print(yaml.safe_dump(chart_values(values), sort_keys=False), end="")
    else:
        chart = f"${{CHART_VALUES_DIR}}/{values['dataflow']['name']}.yaml"
        print("\n".join(deploy_command(values, chart)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
