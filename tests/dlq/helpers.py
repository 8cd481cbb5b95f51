"""Pipeline topics per test, DLQ records made the way stages make them, and ``claimx dlq`` run
in-process against them."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner, Result

from claimx_flow.catalog import StageName
from claimx_flow.cli import app
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.topics import await_leaders
from claimx_flow.models import FailureInfo, MessageIds, MessageOrigin

PARTITIONS = 2


@dataclass
class Pipeline:
    """uuid-named stand-ins for the pipeline topics, and the settings and env that name them."""

    bootstrap: str
    prefix: str
    topics: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.bootstrap,
            kafka_consumer_group_prefix=self.prefix,
            **{f"claimx_{role.replace('.', '_')}_topic": t for role, t in self.topics.items()},
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_CONSUMER_GROUP_PREFIX": self.prefix,
            "COLUMNS": "160",
            **{
                f"CLAIMX_{role.replace('.', '_').upper()}_TOPIC": t
                for role, t in self.topics.items()
            },
        }

    def __getitem__(self, role: str) -> str:
        return self.topics[role]


ROLES = (
    "events",
    "events.dlq",
    "enrichment.pending",
    "enrichment.dlq",
    "downloads.pending",
    "downloads.dlq",
)


def create_topics(admin: AdminClient, names: list[str]) -> None:
    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    for future in futures.values():
        future.result(timeout=30)
    await_leaders(admin, names)


def failure(
    event_id: str,
    *,
    origin_topic: str,
    category: ErrorCategory = ErrorCategory.TRANSIENT,
    error_class: str = "ClaimxApiError",
    message: str = "API call failed: 500 Internal Server Error",
    project_id: str = "p1",
    media_id: str | None = None,
    stage: StageName = "enrich",
    attempt: int = 4,
    replay_count: int = 0,
) -> FailureInfo:
    """Failure metadata as a stage writes it, after ``attempt`` tries."""
    info = FailureInfo.from_reason(
        message,
        error_class=error_class,
        origin=MessageOrigin(origin_topic, 0, 7),
        stage=stage,
        category=category,
        ids=MessageIds(project_id=project_id, event_id=event_id, media_id=media_id),
    )
    return info.model_copy(update={"attempt": attempt, "replay_count": replay_count})


def task_value(event_id: str, project_id: str = "p1", event_type: str = "PROJECT_CREATED") -> bytes:
    return json.dumps(
        {"event_id": event_id, "event_type": event_type, "project_id": project_id}
    ).encode()


def put(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    timestamps: list[datetime] | None = None,
) -> None:
    """Produce (key, value, headers) records and wait until Kafka has every one."""
    producer = Producer({"bootstrap.servers": bootstrap})  # checked below, record by record
    failed: list[Any] = []
    for i, (key, value, headers) in enumerate(records):
        at = int(timestamps[i].timestamp() * 1000) if timestamps else 0
        producer.produce(
            topic,
            value,
            key,
            headers=headers,
            timestamp=at,
            on_delivery=lambda err, _m: failed.append(err) if err else None,
        )
    assert producer.flush(30) == 0
    assert not failed


def put_letters(
    pipeline: Pipeline,
    dlq_role: str,
    infos: list[FailureInfo],
    timestamps: list[datetime] | None = None,
) -> None:
    """One DLQ record per failure: the task as value, keyed by project, plus a foreign header."""
    put(
        pipeline.bootstrap,
        pipeline[dlq_role],
        [
            (
                (info.project_id or "").encode(),
                task_value(info.event_id or "", info.project_id or ""),
                [("trace-id", b"t-" + (info.event_id or "").encode()), *info.to_headers()],
            )
            for info in infos
        ],
        timestamps,
    )


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return raw.decode() if raw is not None else None


def read_all(bootstrap: str, topic: str, *, committed_only: bool = True) -> list[Read]:
    """Everything a fresh reader sees in ``topic`` now (read-committed, like the stages)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 20,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
    out: list[Read] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 30
    try:
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"{topic}: no end of partitions in sight"
            for message in consumer.consume(100, 0.1):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    at_end.add(message.partition() or 0)
                    continue
                headers = dict(message.headers() or [])
                out.append(
                    Read(
                        message.partition() or 0,
                        message.offset() or 0,
                        message.key(),
                        message.value(),
                        headers,
                    )
                )
    finally:
        consumer.close()
    return out


def watermarks(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-watermarks"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()


def claimx(pipeline: Pipeline, *args: str, env: dict[str, str] | None = None) -> Result:
    """``claimx dlq …`` in-process, with the pipeline's topics in the environment."""
    return CliRunner().invoke(app, ["dlq", *args], env={**pipeline.env, **(env or {})})


# Record timestamps a day back, an hour apart: distinct, yet young enough that the broker's
# 7-day retention cannot delete them in the middle of a test.
BASE = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def hour(n: int) -> datetime:
    return BASE + timedelta(hours=n)


def zulu(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
