"""Turn a stage's values file into its ``waxctl dataflow deploy`` command and chart values.

    python waxctl/command.py deploy waxctl/values/enrich.yaml CHART  # the command, one arg a line
    python waxctl/command.py chart-values waxctl/values/enrich.yaml  # what CHART (-V) must hold
    python waxctl/command.py stages                                  # the stages the chart runs

The values files are rendered from the same table as k8s/ (``python k8s/render.py``): their
``deploy`` part becomes flags, their ``chart`` part is the Bytewax Helm chart values file.
Only flags waxctl 0.12.0 documents and keys the chart reads are used; both are recorded with
their sources in tests/ops/fixtures/bytewax_deploy_contract.yaml and the tests hold this file
to them. ``IMAGE_REPOSITORY`` / ``IMAGE_TAG`` in the environment override the image (e.g. a
registry path such as myregistry.azurecr.io/claimx-flow).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from claimx_flow.catalog import STAGE_NAMES, STAGES

CHART_STAGES = [name for name in STAGE_NAMES if not STAGES[name].uses_cache]
"""The stages the chart can run. Download and upload share a cache volume, which the chart
cannot mount into the dataflow container: under it they would refuse to start (exit 2) and
crash-loop, so they are deployed from k8s/ instead (docs/kubernetes.md, "waxctl")."""


def load(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path}: not a mapping"
    return values


def recovery_parts(values: dict[str, Any]) -> int:
    """Partitions the chart's init-recovery makes: every process's share."""
    deploy = values["deploy"]
    return int(deploy["processes"]) * int(deploy["recovery"]["partsPerProcess"])


def deploy_command(values: dict[str, Any], chart_values: str) -> list[str]:
    deploy, recovery = values["deploy"], values["deploy"]["recovery"]
    return [
        "waxctl", "dataflow", "deploy", deploy["path"],
        "-N", deploy["name"],
        "-n", deploy["namespace"],
        "-p", str(deploy["processes"]),
        "-w", str(deploy["workers"]),
        "-i", os.environ.get("IMAGE_REPOSITORY") or deploy["imageRepository"],
        "-t", os.environ.get("IMAGE_TAG") or str(deploy["imageTag"]),
        "-V", chart_values,
        "--recovery",
        "--recovery-parts", str(recovery_parts(values)),
        "--recovery-snapshot-interval", str(recovery["snapshotInterval"]),
        "--recovery-backup-interval", str(recovery["backupInterval"]),
        "--recovery-size", str(recovery["size"]),
    ]  # fmt: skip


def chart_values(values: dict[str, Any]) -> str:
    """The chart-values file: the values file's ``chart`` part, verbatim."""
    header = f"# Bytewax Helm chart values for {values['deploy']['name']} (waxctl -V).\n"
    return header + yaml.safe_dump(values["chart"], sort_keys=False)


def main(argv: list[str]) -> int:
    if argv == ["stages"]:
        left = [name for name in STAGE_NAMES if name not in CHART_STAGES]
        print(f"left out: {', '.join(left)} (no shared cache under the chart)", file=sys.stderr)
        print("\n".join(CHART_STAGES))
        return 0
    if argv[:1] == ["chart-values"] and len(argv) == 2:
        print(chart_values(load(Path(argv[1]))), end="")
        return 0
    if argv[:1] == ["deploy"] and len(argv) == 3:
        print("\n".join(deploy_command(load(Path(argv[1])), argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
