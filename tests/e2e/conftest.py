"""A whole pipeline on real Kafka, the simulator over HTTP, and local Delta tables and files."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from deltalake import DeltaTable

from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from tests.isolation import isolated_settings


@dataclass
class PipelineRun:
    settings: Settings
    pipeline: Pipeline
    tmp: Path

    def produce(self, lines: list[tuple[str, str | bytes]]) -> None:
        self.produce_to(self.settings.claimx_events_topic, lines)

    def produce_to(self, topic: str, lines: list[tuple[str | bytes, str | bytes]]) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers})
        for key, line in lines:
            value = line if isinstance(line, bytes) else line.encode()
            producer.produce(topic, key=key, value=value)
        assert producer.flush(30) == 0

    def table(self, name: str) -> list[dict[str, Any]]:
        path = self.settings.tables_dir / name
        if not (path / "_delta_log").exists():
            return []
        return DeltaTable(str(path.resolve())).to_pyarrow_table().to_pylist()

    def topic_messages(self, topic: str) -> list[Any]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.partition.eof": True,
            }
        )
        metadata = consumer.list_topics(topic, timeout=10)
        parts = list(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        messages, done = [], set()
        deadline = time.monotonic() + 30
        while len(done) < len(parts) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                done.add(msg.partition())
                continue
            messages.append(msg)
        consumer.close()
        return messages

    def last_summary(self) -> str:
        """The results stage's latest summary line."""
        lines = (self.pipeline.log_dir / "results.log").read_text().splitlines()
        summaries = [line for line in lines if "results:" in line]
        return summaries[-1] if summaries else ""

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = self.pipeline.dead()
            assert not dead, f"stages died: {dead}; logs in {self.pipeline.log_dir}"

            if condition():
                return
            time.sleep(1)
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-2000:]}" for p in self.pipeline.log_dir.glob("*.log")
        )
        raise AssertionError(f"timed out waiting for {what}\n{logs}")


@pytest.fixture
def pipeline_run(
    kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path
) -> Iterator[PipelineRun]:
    settings = isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        claimx_results_summary_seconds=1,
        download_concurrency=20,
    )
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    try:
        yield PipelineRun(settings, pipeline, tmp_path)
    finally:
        pipeline.stop()


def header_map(message: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in (message.headers() or [])}


def load(line: str | bytes) -> dict[str, Any]:
    return json.loads(line)
