"""The retry tests' own pipeline: isolated topics with short tiers, and the retry stage as a
real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import Pipeline, settings_env
from tests.isolation import isolated_settings


@pytest.fixture
def retry_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return isolated_settings(kafka_bootstrap, tmp_path / "data", retry_delays=[3, 6, 9, 12])


@pytest.fixture
def retry_stage(retry_settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    pipeline = Pipeline(retry_settings, settings_env(retry_settings), tmp_path / "logs")
    yield pipeline
    pipeline.stop()
