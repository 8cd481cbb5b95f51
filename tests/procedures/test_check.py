"""The dry run: `claimx check` is green when all is well and red, naming the cause, for each
broken dependency; a stage refuses to start on a blocking failure, among them a retry tier that
would delete messages before they are due; tiers the configuration no longer names but that
hold messages are reported."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import typer
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from pydantic import SecretStr
from typer.testing import CliRunner

from claimx_flow.cli.check_cmd import check
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client, await_leaders
from claimx_flow.lab.pipeline import Pipeline, settings_env
from claimx_flow.lab.process import free_port
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.startup.preflight import PreflightError, require_ready, run_checks
from tests.isolation import isolated_settings
from tests.topic_config import set_topic_config


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


def test_an_api_answering_that_it_is_unavailable_is_reported_but_does_not_block(
    healthy: Settings, sim: RunningSimulator
) -> None:
    """A 503 at start is an outage too: a stage that refused to start would only be started
    again into it (chaos found download doing that while the simulator answered 503s)."""
    sim.set_faults(error_rates={503: 1.0})
    (api,) = [c for c in require_ready(healthy, "download") if c.name == "ClaimX API"]
    assert not api.ok and not api.blocking and "503" in api.detail
    assert api.unreachable  # a peer that is down: `claimx check` exits 2 for it


def test_red_for_storage_that_cannot_be_written(healthy: Settings, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory should be")
    broken = healthy.model_copy(update={"claimx_data_dir": blocked})
    found = failures(broken)
    assert {"Delta tables", "download cache", "file storage"} <= set(found)


def test_onelake_out_of_reach_is_an_outage_and_a_refused_path_a_finding(
    healthy: Settings, tmp_path: Path
) -> None:
    """OneLake on a closed port answers nothing: an outage, as an unreachable broker is
    (``claimx check`` exits 2); a data directory that cannot be written is a finding (1)."""
    gone = healthy.model_copy(
        update={
            "onelake_workspace_id": "ws",
            "onelake_lakehouse_id": "lh",
            "onelake_endpoint": f"http://127.0.0.1:{free_port()}/devstoreaccount1",
            "onelake_account_key": SecretStr(base64.b64encode(b"k" * 64).decode()),
        }
    )
    (store,) = [c for c in run_checks(gone, ("upload",)) if c.name == "file storage"]
    assert not store.ok and store.unreachable and "\n" not in store.detail
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory should be")
    local = healthy.model_copy(update={"claimx_data_dir": blocked})
    (store,) = [c for c in run_checks(local, ("upload",)) if c.name == "file storage"]
    assert not store.ok and not store.unreachable


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


def test_topics_with_fewer_replicas_than_configured_are_named_not_blocking(
    healthy: Settings,
) -> None:
    """The one broker here gave every topic one replica; production asks for the runbook's 3
    (the ConfigMap's CLAIMX_TOPIC_REPLICATION_FACTOR), and a topic made with 1 loses its
    messages with one broker: every topic the stage uses is named, and the stage still starts."""
    production = healthy.model_copy(update={"claimx_topic_replication_factor": 3})
    (replication,) = [
        c for c in require_ready(production, "ingest") if c.name == "Kafka replication"
    ]
    assert not replication.ok and not replication.blocking
    for topic in (production.claimx_events_topic, production.claimx_enrichment_pending_topic):
        assert f"{topic} (1)" in replication.detail
    assert "CLAIMX_TOPIC_REPLICATION_FACTOR=3" in replication.detail
    assert "Kafka replication" not in failures(healthy)  # 1 asked, 1 there


def test_sasl_credentials_the_protocol_does_not_send_are_named(healthy: Settings) -> None:
    """KAFKA_SASL_USERNAME/PASSWORD set from the runbook without KAFKA_SECURITY_PROTOCOL: the
    default PLAINTEXT sends neither, and a SASL listener's refusal does not say why."""
    unsent = healthy.model_copy(
        update={"kafka_sasl_username": "svc", "kafka_sasl_password": SecretStr("s3cret-sasl")}
    )
    detail = failures(unsent)["Kafka credentials"]
    assert "KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no credentials" in detail
    assert "s3cret-sasl" not in detail
    gone = unsent.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9"})
    assert "KAFKA_SASL_* are set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in failures(gone)["Kafka"]


def test_a_tier_that_keeps_less_than_its_delay_blocks_its_stages(healthy: Settings) -> None:
    tier = healthy.enrichment_retry_topics[2]  # 1200 s
    set_topic_config(healthy, tier, retention_ms="600000")
    detail = failures(healthy)["retry retention"]
    assert tier in detail and "600s, less than its 1200s delay" in detail
    for stage in ("enrich", "retry"):  # writes to it, reads from it
        with pytest.raises(PreflightError, match=re.escape(tier)):
            require_ready(healthy, stage)
    require_ready(healthy, "download")  # its tiers are the download ladder's


def test_a_compacted_tier_blocks_and_a_tier_kept_forever_does_not(healthy: Settings) -> None:
    compacted, forever = healthy.download_retry_topics[0], healthy.download_retry_topics[1]
    set_topic_config(healthy, compacted, cleanup_policy="compact")
    set_topic_config(healthy, forever, retention_ms="-1")
    with pytest.raises(PreflightError) as refused:
        require_ready(healthy, "upload")
    assert f"{compacted} has cleanup.policy=compact" in str(refused.value)
    assert forever not in str(refused.value)


def test_a_tier_above_its_delay_but_below_the_allowance_is_reported_not_blocking(
    healthy: Settings,
) -> None:
    tier = healthy.download_retry_topics[0]  # 300 s
    set_topic_config(healthy, tier, retention_ms="3600000")  # the old hour
    (retention,) = [c for c in require_ready(healthy, "download") if c.name == "retry retention"]
    assert not retention.ok and not retention.blocking
    assert f"{tier} (3600s)" in retention.detail and "claimx topics create" in retention.detail


def test_a_stage_refuses_a_short_tier_in_one_line_naming_it(
    healthy: Settings, tmp_path: Path
) -> None:
    tier = healthy.enrichment_retry_topics[0]
    set_topic_config(healthy, tier, retention_ms="60000")
    pipeline = Pipeline(healthy, settings_env(healthy), tmp_path / "logs")
    pipeline.start(["retry"])
    (process,) = pipeline.processes["retry"]
    assert process.wait(60) == 2
    log = (tmp_path / "logs" / "retry.log").read_text().splitlines()
    (line,) = [line for line in log if "cannot start" in line]
    assert "retry cannot start: retry retention:" in line and tier in line


def test_an_orphan_tier_with_messages_is_reported(healthy: Settings) -> None:
    """RETRY_DELAYS no longer has 420 s, but its tier still holds a message."""
    orphan = f"{healthy.claimx_enrichment_pending_topic}.retry.7m"
    empty = f"{healthy.claimx_downloads_pending_topic}.retry.420s"
    admin = admin_client(healthy)
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (orphan, empty)]).values():
        future.result(timeout=30)
    await_leaders(admin, [orphan, empty])
    producer = Producer({"bootstrap.servers": healthy.kafka_bootstrap_servers})
    producer.produce(orphan, key=b"p1", value=b"stranded")
    assert producer.flush(30) == 0

    (found,) = [c for c in run_checks(healthy) if c.name == "orphan retry tiers"]
    assert not found.ok and not found.blocking
    assert orphan in found.detail and empty not in found.detail
    assert f"1 held, 420s delay → {healthy.claimx_enrichment_pending_topic}" in found.detail
    assert [c.name for c in require_ready(healthy, "enrich")].count("orphan retry tiers") == 0

    env = {k.upper(): v for k, v in settings_env(healthy).items()} | {"COLUMNS": "400"}
    app = typer.Typer()
    app.command()(check)
    ran = CliRunner().invoke(app, [], env=env)
    assert ran.exit_code == 1, ran.output
    assert "orphan retry tiers" in ran.output and orphan in ran.output
