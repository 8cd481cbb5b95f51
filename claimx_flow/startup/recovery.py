"""A stage's recovery directory: made once, and tied to the Kafka cluster it was made against.

Bytewax keeps each input partition's offset in SQLite snapshots under the directory given by
``-r`` (``BYTEWAX_RECOVERY_DIRECTORY``). Offsets mean something only on the cluster that gave
them, so the first run records the cluster id beside the partitions and later runs must match.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.topics import admin_client

CLUSTER_MARKER = "kafka-cluster-id"


class RecoveryMismatch(ClaimxError):
    """Recovery state that belongs to another Kafka cluster: its offsets mean nothing here."""


def check_recovery_cluster(settings: Settings, stage: str, cluster_id: str) -> None:
    """Refuse to resume from offsets recorded against a different Kafka cluster.

    A recreated cluster starts its offsets at zero again; resuming from old snapshots would
    skip or misread messages. The first run records the cluster; later runs must match it.
    """
    marker = settings.recovery_dir(stage) / CLUSTER_MARKER
    if not marker.exists():
        return
    recorded = marker.read_text().strip()
    if recorded != cluster_id:
        raise RecoveryMismatch(
            f"{stage}: recovery state in {marker.parent} was made against Kafka cluster "
            f"{recorded}, but {settings.kafka_bootstrap_servers} is cluster {cluster_id}; "
            f"reset it (delete the directory) to start from the beginning of the topics"
        )


def reset_recovery(settings: Settings, stage: str) -> None:
    shutil.rmtree(settings.recovery_dir(stage), ignore_errors=True)


def init_recovery(settings: Settings, stage: str, cluster_id: str | None = None) -> Path:
    """The stage's recovery directory, with its partitions created the first time."""
    directory = settings.recovery_dir(stage).resolve()
    if cluster_id is not None:
        check_recovery_cluster(settings, stage, cluster_id)
    if directory.exists() and any(directory.glob("part-*.sqlite3")):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    if cluster_id is not None:
        (directory / CLUSTER_MARKER).write_text(cluster_id + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bytewax.recovery",
            str(directory),
            str(settings.claimx_recovery_partitions),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise ClaimxError(f"cannot initialise recovery for {stage}: {result.stderr.strip()[-300:]}")
    return directory


def kafka_cluster_id(settings: Settings) -> str:
    metadata = admin_client(settings).list_topics(timeout=15)
    return str(metadata.cluster_id)
