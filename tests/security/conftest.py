"""Shared pieces of the hostile-input suite: how long to fuzz, and how to read a metric.

Fuzzing runs briefly in CI and longer on demand: ``CLAIMX_FUZZ_EXAMPLES=20000 pytest
tests/security -k fuzz`` (docs/security.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from prometheus_client import REGISTRY

from tests.e2e.conftest import pipeline_run  # noqa: F401 - whole pipelines, as in tests/e2e

FUZZ_EXAMPLES = int(os.environ.get("CLAIMX_FUZZ_EXAMPLES", "300"))

fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Hypothesis settings of every fuzz test here."""


def metric(name: str, **labels: str) -> float:
    """A sample of this process's default registry (what a stage's ``/metrics`` serves)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Counted:
    """The change of one sample across a block: ``with counted(...) as c: …; c.delta``."""

    name: str
    labels: dict[str, str]
    before: float = 0.0

    @property
    def delta(self) -> float:
        return metric(self.name, **self.labels) - self.before


class counted:
    def __init__(self, name: str, **labels: str) -> None:
        self.counter = Counted(name, labels)

    def __enter__(self) -> Counted:
        self.counter.before = metric(self.counter.name, **self.counter.labels)
        return self.counter

    def __exit__(self, *exc: object) -> None:
        return None


def dlq_messages(stage: str, topic: str) -> Counted:
    return Counted("claimx_dlq_messages_total", {"stage": stage, "topic": topic})


def iter_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Samples of a ``/metrics`` page (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), sample.value
