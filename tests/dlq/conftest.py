"""Fixtures for the DLQ tests: a private set of pipeline topics per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from tests.dlq.helpers import ROLES, Pipeline, create_topics


@pytest.fixture
def pipeline(kafka_bootstrap: str, clean_env: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    prefix = f"dlq{uuid.uuid4().hex[:8]}"
    topics = {role: f"{prefix}.{role}" for role in ROLES}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    create_topics(admin, list(topics.values()))
    yield Pipeline(kafka_bootstrap, prefix, topics)
    for future in admin.delete_topics(list(topics.values()), operation_timeout=30).values():
        future.result(timeout=30)


@pytest.fixture
def extra_topic(kafka_bootstrap: str) -> Iterator[Callable[[], str]]:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made: list[str] = []

    def make() -> str:
        name = f"dlqx.{uuid.uuid4().hex[:12]}"
        create_topics(admin, [name])
        made.append(name)
        return name

    yield make
    if made:
        for future in admin.delete_topics(made, operation_timeout=30).values():
            future.result(timeout=30)
