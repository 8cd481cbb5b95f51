"""What every poison test does: produce records exactly as generated, run a stage (a real
``python -m bytewax.run`` process, or its ``build(settings)`` dataflow in-process) until its
input is drained, and read back every place a record can end.

A stage run here always has ``CLAIMX_STOP_AT_END``: it ends by itself once its inputs are
drained, so "the stage never died" is a plain check of its exit code (or of ``run_main``
returning) and its log.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from deltalake import DeltaTable
from hypothesis import HealthCheck, Phase, settings

from claimx_flow.config import Settings
from claimx_flow.kafka.records import message_headers
from claimx_flow.kafka.topics import admin_client, await_leaders
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.models import FailureInfo, MalformedHeadersError

BATCH = 30
"""Generated poisoned records per stage run: many examples, one run."""
EXAMPLES = int(os.environ.get("CLAIMX_FUZZ_EXAMPLES", str(2 * BATCH)))
RUNS = max(1, EXAMPLES // BATCH)
"""Stage runs per property (each with a fresh batch): ``CLAIMX_FUZZ_EXAMPLES`` / ``BATCH``."""

EXPLORE = "CLAIMX_FUZZ_EXAMPLES" in os.environ
"""Random batches only when asked for more examples; CI draws the same batches every time, so a
failure there is one a developer can run again (and a new one is found by exploring)."""

poison_settings = settings(
    max_examples=RUNS,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # Each example is a whole batch through a real stage, and the failure message names every
    # record that went astray, so shrinking (dozens of stage runs) is only on demand.
    phases=(
        [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
        if os.environ.get("CLAIMX_POISON_SHRINK")
        else [Phase.explicit, Phase.reuse, Phase.generate]
    ),
    print_blob=True,
)


def runs_within(per_run_s: float) -> pytest.MarkDecorator:
    """A property's time limit: ``per_run_s`` for each of its ``RUNS`` (more when exploring),
    never below the suite's 300 s."""
    return pytest.mark.timeout(max(300, int(per_run_s * RUNS) + 60))


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")
MAX_PRODUCE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RawRecord:
    """One record to produce, exactly as generated."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None

    def describe(self, limit: int = 160) -> str:
        """A short, printable form of the record for failure messages."""

        def cut(data: bytes | None) -> str:
            if data is None:
                return "None"
            shown = repr(data[:limit])
            return shown + (f"… ({len(data)} bytes)" if len(data) > limit else "")

        headers = [(name[:40], cut(value)[:60]) for name, value in self.headers[:6]]
        more = f" +{len(self.headers) - 6} more" if len(self.headers) > 6 else ""
        return (
            f"value={cut(self.value)} key={cut(self.key)[:80]} ts={self.timestamp_ms} "
            f"headers={headers}{more}"
        )


@dataclass(frozen=True)
class Placed:
    """Where a produced record was stored."""

    record: RawRecord
    partition: int
    offset: int


@dataclass(frozen=True)
class Read:
    """One message read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        """The last value of header ``name``, decoded leniently."""
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode("utf-8", "replace") if values else None

    def failure(self) -> FailureInfo | None:
        try:
            return FailureInfo.maybe_from_headers(self.headers)
        except MalformedHeadersError:
            return None


def produce_exact(
    settings: Settings, topic: str, records: Iterable[RawRecord], partition: int = 0
) -> list[Placed]:
    """Produce ``records`` one at a time, in order, to one partition; where each was stored.

    One at a time: a record the broker refuses must not take its batch-mates with it, and the
    order on the partition is the order given.
    """
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "message.max.bytes": MAX_PRODUCE_BYTES,
            "enable.idempotence": True,
            "linger.ms": 0,
        }
    )
    placed: list[Placed] = []
    outcome: list[Any] = []
    for record in records:
        outcome.clear()
        extra: dict[str, Any] = {}
        if record.timestamp_ms is not None:
            extra["timestamp"] = record.timestamp_ms
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers),
            partition=partition,
            on_delivery=lambda error, message: outcome.append((error, message)),
            **extra,
        )
        assert producer.flush(30) == 0, "a generated record was not delivered in 30 s"
        ((error, message),) = outcome
        assert error is None, f"the broker refused a generated record: {error}"
        placed.append(Placed(record, message.partition(), message.offset()))
    return placed


def largest_accepted(
    settings: Settings, limit: int, make: Callable[[int], RawRecord], low: int, high: int
) -> int:
    """The largest ``size`` for which the record ``make(size)`` is accepted by a topic whose
    ``max.message.bytes`` is ``limit`` (a scratch topic, searched by halving)."""
    topic = f"{settings.claimx_events_topic}.probe-{uuid.uuid4().hex[:6]}"
    admin = admin_client(settings)
    new = NewTopic(topic, 1, 1, config={"max.message.bytes": str(limit)})
    for future in admin.create_topics([new]).values():
        future.result(timeout=30)
    await_leaders(admin, [topic])
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "message.max.bytes": MAX_PRODUCE_BYTES,
            "linger.ms": 0,
        }
    )
    try:
        while low < high:
            middle = (low + high + 1) // 2
            record, refused = make(middle), []
            producer.produce(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                on_delivery=lambda error, _: refused.append(error is not None),  # noqa: B023
            )
            producer.flush(30)
            if refused == [False]:
                low = middle
            else:
                high = middle - 1
        return low
    finally:
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=30)


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Read]:
    """Every message in ``topic`` from its start to its end now."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"poison-reader-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "fetch.message.max.bytes": MAX_PRODUCE_BYTES,
            "receive.message.max.bytes": MAX_PRODUCE_BYTES + 1024 * 1024,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=15)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        out: list[Read] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: could not read to its end"
            for message in consumer.consume(200, 0.2):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    at_end.add(message.partition() or 0)
                    continue
                out.append(
                    Read(
                        topic,
                        message.partition() or 0,
                        message.offset() or 0,
                        message.key(),
                        message.value(),
                        [(k, v or b"") for k, v in message_headers(message)],
                        message.timestamp()[1],
                    )
                )
        return out
    finally:
        consumer.close()


def read_topics(settings: Settings, topics: Iterable[str]) -> list[Read]:
    return [read for topic in topics for read in read_topic(settings, topic)]


class UnreadableTable(Exception):
    """A Delta table whose rows Python cannot hold (a timestamp before year 1 or after 9999)."""


def table(settings: Settings, name: str, *, lenient: bool = False) -> list[dict[str, Any]]:
    """The table's rows as Python values. A timestamp outside Python's calendar raises
    ``UnreadableTable`` (every Python reader of the table would fail the same way), or, when
    ``lenient``, is given as its integer microseconds so the other checks can go on."""
    path = (settings.tables_dir / name).resolve()
    if not (path / "_delta_log").exists():
        return []
    arrow = DeltaTable(str(path)).to_pyarrow_table()
    try:
        rows: list[dict[str, Any]] = arrow.to_pylist()
    except (OverflowError, ValueError) as exc:
        if not lenient:
            raise UnreadableTable(f"{name}: {exc}") from None
        for index, column in enumerate(arrow.schema):
            if pa.types.is_timestamp(column.type):
                arrow = arrow.set_column(index, column.name, pc.cast(arrow[index], pa.int64()))
        rows = arrow.to_pylist()
    return rows


def unreadable_timestamps(settings: Settings, name: str) -> list[str]:
    """Rows of ``name`` holding an instant outside Python's calendar: ``key column=value``."""
    path = (settings.tables_dir / name).resolve()
    if not (path / "_delta_log").exists():
        return []
    arrow = DeltaTable(str(path)).to_pyarrow_table()
    low, high = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1 and 9999, in µs
    found = []
    for column in arrow.schema:
        if not pa.types.is_timestamp(column.type):
            continue
        for row, value in enumerate(pc.cast(arrow[column.name], pa.int64()).to_pylist()):
            if value is not None and not low <= value <= high:
                key = {k: arrow[k][row].as_py() for k in arrow.schema.names if k.endswith("_id")}
                found.append(f"{column.name}={value}µs in row {key}")
    return found


def run_inprocess(flow: Dataflow) -> None:
    """The dataflow on one worker in this process, until its inputs are drained; any error a
    record causes that stops the dataflow is raised here."""
    run_main(flow)


@dataclass
class StageExit:
    stage: str
    returncode: int | None
    log: str
    seconds: float

    @property
    def tail(self) -> str:
        return "\n".join(self.log.splitlines()[-40:])

    def errors(self) -> list[str]:
        """The log lines at ERROR or above, and Python tracebacks."""
        return [
            line[:400]
            for line in self.log.splitlines()
            if " ERROR " in line
            or " CRITICAL " in line
            or _EXCEPTION_LINE.match(line)
            or "panicked at" in line
        ]


def run_stage_process(
    settings: Settings, stage: str, log_dir: Path, timeout_s: float = 120.0
) -> StageExit:
    """``python -m bytewax.run dataflows.<stage>`` (recovery on, ``CLAIMX_STOP_AT_END``) until
    it exits by itself; killed and reported if it has not within ``timeout_s``."""
    run_settings = settings.model_copy(update={"claimx_stop_at_end": True})
    pipeline = Pipeline(run_settings, settings_env(run_settings), log_dir)
    started = time.monotonic()
    pipeline.start([stage])
    (process,) = pipeline.processes[stage]
    try:
        returncode: int | None = process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        pipeline.stop(grace_s=10)
    log_path = log_dir / f"{stage}.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    return StageExit(stage, returncode, log, time.monotonic() - started)
