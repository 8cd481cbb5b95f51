"""The dry run: `claimx check` is green when all is well and red, naming the cause, for each
broken dependency; a stage refuses to start on a blocking failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from claimx_flow.cli.check_cmd import check
from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.startup.preflight import PreflightError, require_ready, run_checks
from tests.isolation import isolated_settings


@pytest.fixture
def healthy(kafka_bootstrap: str, sim: RunningSimulator, tmp_path: Path) -> Settings:
    return isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        sim=sim,
        claimx_api_timeout_seconds=2,
        claimx_api_max_retries=0,
        claimx_topic_partitions=1,
    )


def failures(settings: Settings) -> dict[str, str]:
    return {c.name: c.detail for c in run_checks(settings) if not c.ok}


def test_green_when_all_is_well(healthy: Settings) -> None:
    assert failures(healthy) == {}


def test_red_for_a_wrong_broker(healthy: Settings) -> None:
    broken = healthy.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9"})
    assert "unreachable" in failures(broken)["Kafka"]


def test_red_for_missing_topics(healthy: Settings) -> None:
    broken = healthy.model_copy(update={"claimx_events_topic": "no.such.topic"})
    assert "no.such.topic" in failures(broken)["Kafka"]


def test_red_for_a_wrong_api_password(healthy: Settings) -> None:
    broken = healthy.model_copy(update={"claimx_api_password": SecretStr("wrong-password-123")})
    detail = failures(broken)["ClaimX API"]
    assert "credentials" in detail.lower() or "401" in detail
    assert "wrong-password-123" not in detail
    with pytest.raises(PreflightError, match="ClaimX API"):
        require_ready(broken, "enrich")


def test_an_unreachable_api_is_reported_but_does_not_block(
    healthy: Settings, sim: RunningSimulator
) -> None:
    sim.set_faults(down=True)
    (api,) = [c for c in require_ready(healthy, "enrich") if c.name == "ClaimX API"]
    assert not api.ok and not api.blocking


def test_red_for_storage_that_cannot_be_written(healthy: Settings, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory should be")
    broken = healthy.model_copy(update={"claimx_data_dir": blocked})
    found = failures(broken)
    assert {"Delta tables", "download cache", "file storage"} <= set(found)


def test_the_command_prints_a_table_and_exits_non_zero(healthy: Settings) -> None:
    env = {k.upper(): v for k, v in settings_env(healthy).items()}
    runner = CliRunner()
    app = typer.Typer()
    app.command()(check)
    good = runner.invoke(app, ["--stage", "ingest"], env=env)
    assert good.exit_code == 0, good.output
    assert "pass" in good.output and "FAIL" not in good.output
    bad = runner.invoke(
        app, ["--stage", "ingest"], env={**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    )
    assert bad.exit_code == 1 and "FAIL" in bad.output


def test_a_stage_refuses_to_start_and_says_why(healthy: Settings, tmp_path: Path) -> None:
    broken = healthy.model_copy(update={"claimx_events_topic": "no.such.topic"})
    pipeline = Pipeline(broken, settings_env(broken), tmp_path / "logs")
    pipeline.start(["ingest"])
    (process,) = pipeline.processes["ingest"]
    assert process.wait(60) == 2
    log = (tmp_path / "logs" / "ingest.log").read_text()
    assert "ingest cannot start" in log and "no.such.topic" in log
