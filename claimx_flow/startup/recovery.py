"""A stage's recovery directory: made once, and tied to the Kafka cluster and topics it was made
against.

Bytewax keeps each input partition's offset in SQLite snapshots under the directory given by
``-r`` (``BYTEWAX_RECOVERY_DIRECTORY``). Offsets mean something only on the cluster, and the
incarnation of each topic, that gave them: a recreated cluster or a topic deleted and created
again under the same name starts its offsets at zero. So the directory records the cluster id
(``kafka-cluster-id``) and the id of each input topic (``kafka-topic-ids``), the first time a
stage starts on it (or when ``claimx recovery init`` makes it), and later starts must match
(``claimx_flow.startup.recovery_state.check_recovery_identity``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, TopicCollection

from claimx_flow import catalog
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import settled
from claimx_flow.kafka.topics import admin_client

CLUSTER_MARKER = "kafka-cluster-id"
TOPICS_MARKER = "kafka-topic-ids"
RECOVERY_DIRECTORY_ENV = "BYTEWAX_RECOVERY_DIRECTORY"


class RecoveryMismatch(ClaimxError):
    """Recovery state that belongs to another Kafka cluster or another incarnation of a topic:
    its offsets mean nothing here."""


@dataclass(frozen=True)
class TopicState:
    """An input topic as the broker has it now."""

    name: str
    topic_id: str
    partitions: tuple[int, ...]


def recovery_directory(settings: Settings, stage: str) -> Path:
    """Where the stage's Bytewax partitions are: ``BYTEWAX_RECOVERY_DIRECTORY`` when set (what
    ``python -m bytewax.run`` uses without ``-r``: the pods' recovery volume), else
    ``CLAIMX_DATA_DIR/recovery/<stage>`` (what the local runner passes with ``-r``)."""
    configured = os.environ.get(RECOVERY_DIRECTORY_ENV)
    return Path(configured) if configured else settings.recovery_dir(stage)


def process_recovery_directory(argv: Sequence[str], env: Mapping[str, str]) -> Path | None:
    """The recovery directory Bytewax runs this process with, read as ``bytewax.run`` reads
    it: ``-r``/``--recovery-directory``, else ``BYTEWAX_RECOVERY_DIRECTORY``. None: the bare
    command without the variable runs with no recovery at all, and resumes from the stage's
    consumer group, so no directory's snapshots or records concern it."""
    parser = argparse.ArgumentParser(add_help=False)  # abbreviations too, as bytewax.run takes
    parser.add_argument("-r", "--recovery-directory")
    known, _ = parser.parse_known_args(list(argv))
    given = known.recovery_directory
    if given is None:
        given = env.get(RECOVERY_DIRECTORY_ENV)
    return None if given is None else Path(given)  # "" is the working directory, to Bytewax


def check_recovery_cluster(settings: Settings, stage: str, cluster_id: str) -> None:
    """Refuse to resume from offsets recorded against a different Kafka cluster.

    A recreated cluster starts its offsets at zero again; resuming from old snapshots would
    skip or misread messages. The first run records the cluster; later runs must match it.
    """
    marker = recovery_directory(settings, stage) / CLUSTER_MARKER
    if not marker.exists():
        return
    recorded = marker.read_text().strip()
    if recorded != cluster_id:
        raise RecoveryMismatch(
            f"{stage}: recovery state in {marker.parent} was made against Kafka cluster "
            f"{recorded}, but {settings.kafka_bootstrap_servers} is cluster {cluster_id}; "
            f"reset it (delete the directory) to start from the beginning of the topics"
        )


def recorded_topic_ids(settings: Settings, stage: str) -> dict[str, str]:
    """The input topic ids the stage's recovery directory was recorded against (topic → id)."""
    marker = recovery_directory(settings, stage) / TOPICS_MARKER
    try:
        recorded = json.loads(marker.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise ClaimxError(f"{marker} is not the JSON object of topic ids it should be") from None
    if not isinstance(recorded, dict):
        raise ClaimxError(f"{marker} is not the JSON object of topic ids it should be")
    return {str(k): str(v) for k, v in recorded.items()}


def record_identity(
    settings: Settings,
    stage: str,
    cluster_id: str,
    topics: Iterable[TopicState],
    *,
    replace: bool,
) -> None:
    """Record the cluster and the topic ids beside the stage's partitions.

    Without ``replace`` only what is not recorded yet is added (a first start); with it the
    record becomes the cluster and topics as they are now (after a reset moved every offset).
    """
    directory = recovery_directory(settings, stage)
    directory.mkdir(parents=True, exist_ok=True)
    cluster_marker = directory / CLUSTER_MARKER
    if replace or not cluster_marker.exists():
        _write(cluster_marker, cluster_id + "\n")
    recorded = {} if replace else recorded_topic_ids(settings, stage)
    ids = {**{t.name: t.topic_id for t in topics}, **recorded}
    if ids != recorded or not (directory / TOPICS_MARKER).exists():
        _write(directory / TOPICS_MARKER, json.dumps(ids, indent=2, sort_keys=True) + "\n")


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def describe_input_topics(
    settings: Settings, stage: str, timeout_s: float = 15.0, also: Iterable[str] = ()
) -> dict[str, TopicState]:
    """The stage's input topics that exist now, with their ids and partitions; ``also``: more
    topics it reads (the orphan tiers a retry stage drained, named by its snapshots)."""
    names = list(dict.fromkeys([*catalog.input_topics(settings, catalog.stage(stage)), *also]))
    if not names:
        return {}
    admin = admin_client(settings)

    def describe() -> dict[str, TopicState]:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout_s)
        found: dict[str, TopicState] = {}
        for name, future in futures.items():
            try:
                described = future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue  # a missing topic is the Kafka check's to report
                raise
            partitions = tuple(sorted(p.id for p in described.partitions))
            found[name] = TopicState(name, str(described.topic_id), partitions)
        return found

    return settled(describe, what=f"describe the input topics of {stage}", timeout_s=timeout_s)


def reset_recovery(settings: Settings, stage: str) -> None:
    shutil.rmtree(recovery_directory(settings, stage), ignore_errors=True)


def init_recovery(settings: Settings, stage: str, cluster_id: str | None = None) -> Path:
    """The stage's recovery directory, with its partitions created the first time."""
    directory = recovery_directory(settings, stage).resolve()
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
