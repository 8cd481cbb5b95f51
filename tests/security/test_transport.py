"""Transport: TLS is verified by every HTTP client and Kafka client the project makes, and the
SASL settings reach every Kafka client — proved on a broker that demands a SASL/PLAIN login.

TLS is proved against a loopback HTTPS server with a self-signed certificate: each client must
refuse the handshake, so the server never sees a request. SASL is proved against a second
local broker (``KafkaService(sasl_users=…)``) whose SASL listener accepts one user.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from typer.testing import CliRunner

from claimx_flow.api import ClaimXApiClient
from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.cli import app
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka import topics
from claimx_flow.kafka.clients import (
    LIBRDKAFKA_LOGGER,
    client_config,
    consumer_config,
    failure_reason,
    producer_config,
)
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.lab.pipeline import Pipeline, settings_env, stage_command
from claimx_flow.lab.process import stop_process_group
from claimx_flow.lab.stack import KafkaService, RunningService
from claimx_flow.lab.stack.kafka import SASL_ENDPOINT
from claimx_flow.models import DownloadTask, FailureInfo
from claimx_flow.runtime import health
from claimx_flow.stages.download import DownloadStage
from claimx_flow.storage.address import OneLakeAddress
from claimx_flow.storage.locations import delta_storage_options, file_store
from claimx_flow.storage.onelake import OneLakeError, OneLakeTuning
from tests.isolation import isolated_settings
from tests.security import hostile

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


# TLS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kafka_configs_never_turn_certificate_checks_off(protocol: str) -> None:
    """librdkafka verifies the broker's certificate and host name by default (since 2.0); no
    config the project builds may switch either off."""
    settings = Settings(
        kafka_security_protocol=protocol, kafka_sasl_username="u", kafka_sasl_password="p"
    )
    for config in (
        client_config(settings),
        producer_config(settings),
        consumer_config(settings, "g"),
    ):
        assert config.get("enable.ssl.certificate.verification", True) in (True, "true")
        assert config.get("ssl.endpoint.identification.algorithm", "https") == "https"
        assert config["security.protocol"] == protocol


INSECURE = (
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
    "verify_ssl",
    "CERT_NONE",
    "check_hostname",
    "connection_verify",
    "allow_invalid_certificates",
    "ssl=False",
)


def test_no_source_file_disables_certificate_checks() -> None:
    """The whole shipped code base (the simulator aside: it is a test server) never names a
    switch that weakens TLS, so no path can turn it off."""
    offenders = []
    for package in ("claimx_flow", "operators", "dataflows", "kafka_pipeline"):
        for path in (REPO / package).rglob("*.py"):
            if "simulator" in path.parts:
                continue
            text = path.read_text()
            offenders += [f"{path.relative_to(REPO)}: {word}" for word in INSECURE if word in text]
    assert offenders == []


def test_delta_storage_options_keep_tls_for_real_endpoints() -> None:
    settings = Settings(
        onelake_workspace_id="ws",
        onelake_lakehouse_id="lh",
        onelake_account_key=SecretStr("a2V5"),
    )
    address = OneLakeAddress(settings.onelake_endpoint, "ws", "lh")
    options = delta_storage_options(settings, address)
    assert not any("allow_http" in k or "invalid" in k or "emulator" in k for k in options)


@pytest.fixture(scope="module")
def untrusted_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hostile.HostileServer]:
    """HTTPS on 127.0.0.1 with a certificate no trust store knows. Any request that reaches
    it would mean a client skipped verification."""
    tls = hostile.self_signed_tls(tmp_path_factory.mktemp("tls"))
    with hostile.serving(hostile.answer(200, b"{}"), tls=tls) as server:
        yield server


def test_the_api_client_refuses_an_unverified_certificate(
    untrusted_https: hostile.HostileServer,
) -> None:
    settings = Settings(
        claimx_api_url=untrusted_https.url("/service/cxedirest"),
        claimx_api_max_retries=0,
        claimx_api_timeout_seconds=5,
    )

    async def call() -> ClaimXApiError:
        async with ClaimXApiClient(settings) as client:
            with pytest.raises(ClaimXApiError) as failed:
                await client.get_project("5000001")
            return failed.value

    error = asyncio.run(call())
    assert "CertificateError" in error.message and "certificate verify failed" in error.message
    assert untrusted_https.requests == []


def test_the_downloader_refuses_an_unverified_certificate(
    untrusted_https: hostile.HostileServer, tmp_path: Path
) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", download_require_https=False)
    task = DownloadTask(
        media_id="1",
        project_id="2",
        download_url=untrusted_https.url("/x.jpg"),
        file_name="x.jpg",
        file_type="jpg",
        source_event_id="e",
    )
    stage = DownloadStage.from_settings(settings)
    record = KafkaRecord("p", 0, 0, None, b"1", task.to_json())

    async def go() -> Any:
        try:
            return await stage.process([(record, task)])
        finally:
            assert stage._session is not None and stage._client is not None
            await stage.close()

    (routed,) = asyncio.run(go())
    info = FailureInfo.from_headers(routed.headers)
    assert "connection failed: ClientConnectorCertificateError" in info.error_message
    assert untrusted_https.requests == []


def test_the_readiness_probe_refuses_an_unverified_certificate(
    untrusted_https: hostile.HostileServer,
) -> None:
    probe = health.api_probe(Settings(claimx_api_url=untrusted_https.url("/api")))
    with pytest.raises(Exception, match="certificate verify failed"):
        asyncio.run(probe())
    assert untrusted_https.requests == []


def test_the_onelake_store_refuses_an_unverified_certificate(
    untrusted_https: hostile.HostileServer, tmp_path: Path
) -> None:
    """The Azure SDK verifies by default (``connection_verify=True``); nothing overrides it."""
    settings = Settings(
        onelake_workspace_id="ws",
        onelake_lakehouse_id="lh",
        onelake_endpoint=untrusted_https.url("/devstoreaccount1"),
        onelake_account_key=SecretStr("a2V5"),
    )
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")

    async def put() -> None:
        store = file_store(settings, OneLakeTuning(retries=0))
        try:
            await store.put("claimx/1/media/1_f.jpg", source)
        finally:
            await store.close()

    with pytest.raises(OneLakeError) as failed:
        asyncio.run(put())
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value) or "certificate" in str(failed.value)
    assert failed.value.category is ErrorCategory.TRANSIENT
    assert untrusted_https.requests == []


# SASL ---------------------------------------------------------------------------------------

SASL_USER = "claimx"
SASL_PASSWORD = "Sasl-Right-51c9e2"
WRONG_PASSWORD = "Sasl-Wrong-07ab44"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    os.environ.setdefault("CLAIMX_CACHE_DIR", str(REPO / ".cache"))
    running = KafkaService(sasl_users={SASL_USER: SASL_PASSWORD}).start(
        tmp_path_factory.mktemp("sasl-kafka")
    )
    try:
        yield running
    finally:
        stop_process_group(running.pid)


def sasl_settings(broker: RunningService, tmp_path: Path, password: str) -> Settings:
    return isolated_settings(
        broker.extra[SASL_ENDPOINT],
        tmp_path / "data",
        create_topics=False,  # `claimx topics create` does it, over SASL
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=SASL_USER,
        kafka_sasl_password=SecretStr(password),
        claimx_topic_partitions=1,
        claimx_stop_at_end=True,
        claimx_api_url="http://127.0.0.1:9/service/cxedirest",  # ingest needs no API
    )


def claimx(settings: Settings, *args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**settings_env(settings), "CLAIMX_STACK_DIR": str(cwd / "no-stack"), "COLUMNS": "300"}
    return subprocess.Popen(
        [sys.executable, "-m", "claimx_flow", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(process: subprocess.Popen[str], timeout_s: float = 60) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout_s)
    return process.returncode, output


def read_all(settings: Settings, topic: str) -> list[Any]:
    consumer = Consumer(consumer_config(settings, f"t-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages, deadline = [], time.monotonic() + 10
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            messages.append(message)
        elif messages and message is None:
            break
    consumer.close()
    return messages


def test_every_kafka_client_logs_in_with_the_configured_password(
    sasl_broker: RunningService, tmp_path: Path
) -> None:
    settings = sasl_settings(sasl_broker, tmp_path, SASL_PASSWORD)
    code, output = finished(claimx(settings, "topics", "create", cwd=tmp_path))  # admin
    assert code == 0, output
    producer = Producer(producer_config(settings))
    producer.produce(settings.claimx_events_topic, key=b"k", value=b"{not json")
    good = {"event_type": "PROJECT_CREATED", "project_id": "1", "ingested_at": "2024-01-01T00:00Z"}
    producer.produce(settings.claimx_events_topic, key=b"k", value=json.dumps(good).encode())
    assert producer.flush(15) == 0

    # The ingest stage as a process: its preflight, KafkaInput and KafkaOutput all log in.
    pipeline = Pipeline(settings, settings_env(settings), tmp_path / "logs")
    pipeline.start(["ingest"])
    try:
        deadline = time.monotonic() + 60
        while pipeline.processes["ingest"][0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert pipeline.processes["ingest"][0].returncode == 0, (tmp_path / "logs").glob("*")
    finally:
        pipeline.stop()
    (task,) = read_all(settings, settings.claimx_enrichment_pending_topic)  # consumer
    assert json.loads(task.value())["project_id"] == "1"
    (dead,) = read_all(settings, settings.claimx_events_dlq_topic)
    assert dead.value() == b"{not json"

    code, output = finished(claimx(settings, "dlq", "list", "--json", cwd=tmp_path))
    assert code == 0, output
    assert json.loads(output)  # the DLQ CLI read the counts through its own clients
    assert SASL_PASSWORD not in output


def test_a_wrong_password_is_refused_everywhere_and_never_printed(
    sasl_broker: RunningService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LIBRDKAFKA_LOGGER.name)
    right = sasl_settings(sasl_broker, tmp_path, SASL_PASSWORD)
    wrong = right.model_copy(update={"kafka_sasl_password": SecretStr(WRONG_PASSWORD)})
    # In parallel, as each waits out its own timeout: a stage process, the DLQ CLI.
    stage_log = tmp_path / "ingest.log"
    with stage_log.open("w") as log:
        stage = subprocess.Popen(
            stage_command(wrong, "ingest"),
            env={**settings_env(wrong), "CLAIMX_HEALTH_PORT": "0"},
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    dlq = claimx(wrong, "dlq", "--timeout", "3", "list", cwd=tmp_path)
    try:
        admin = AdminClient(client_config(wrong))
        with pytest.raises(KafkaException) as refused:
            admin.list_topics(timeout=3)
        assert "authentication failed" in failure_reason(admin, refused.value)
        consumer = Consumer(consumer_config(wrong, "g"))
        with pytest.raises(KafkaException) as refused:
            consumer.list_topics(timeout=3)
        assert "Invalid username or password" in failure_reason(consumer, refused.value)
        consumer.close()
        producer = Producer(producer_config(wrong, **{"message.timeout.ms": 3000}))
        reports: list[Any] = []
        producer.produce(
            right.claimx_events_topic, value=b"x", on_delivery=lambda e, _m: reports.append(e)
        )
        producer.flush(10)
        assert len(reports) == 1 and reports[0] is not None  # never delivered
        assert any("SASL authentication error" in r.getMessage() for r in caplog.records)

        # Last, as the CLI quiets librdkafka's logger (restored after the test):
        # `claimx topics create` in-process, with its admin timeout cut from 15 s to 3 s.
        monkeypatch.setattr(LIBRDKAFKA_LOGGER, "level", LIBRDKAFKA_LOGGER.level)
        monkeypatch.setattr(topics, "ADMIN_TIMEOUT_S", 3.0)
        for name, value in settings_env(wrong).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CLAIMX_STACK_DIR", str(tmp_path / "no-stack"))
        created = CliRunner().invoke(app, ["topics", "create"])
        assert created.exit_code != 0
        assert "authentication failed" in str(created.output) + str(created.exception)

        code, dlq_output = finished(dlq)
        assert code == 2 and "authentication failed" in dlq_output
        assert stage.wait(30) == 2  # the preflight stops it, saying why
    finally:
        for process in (stage, dlq):
            if process.poll() is None:
                process.kill()
                process.wait()
    logged = stage_log.read_text()
    assert "authentication failed" in logged
    everything = [logged, dlq_output, created.output, str(created.exception)]
    everything += [r.getMessage() for r in caplog.records]
    assert not [text for text in everything if WRONG_PASSWORD in text or SASL_PASSWORD in text]


def test_every_kafka_client_in_the_code_base_takes_its_config_from_kafka_config() -> None:
    """Each ``Producer(…)``, ``Consumer(…)`` and ``AdminClient(…)`` the shipped code makes is in
    a module built on ``claimx_flow.kafka.clients``, or in a generic operator that takes its
    client configuration from its caller — and every module that builds one of those operators
    is built on ``claimx_flow.kafka.clients``. The one exception is the local broker's readiness
    probe, which talks to the plaintext listener the stack itself started."""
    exempt = {"claimx_flow/lab/stack/kafka.py"}
    makers = {"Producer", "Consumer", "AdminClient"}
    operators = {"KafkaInput", "DueTimeInput", "KafkaOutput", "CheckedProducer"}
    unconfigured = []
    for package in ("claimx_flow", "operators", "dataflows", "kafka_pipeline"):
        for path in (REPO / package).rglob("*.py"):
            relative = path.relative_to(REPO).as_posix()
            tree = ast.parse(path.read_text())
            called = {
                node.func.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            }
            if "checked_kafka_output" in called:
                called.add("KafkaOutput")
            # Operators take the configuration as an argument; their callers must build it. The
            # module that defines an operator hands its caller's configuration on to it.
            defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
            wanted = (operators - defined) if package == "operators" else makers | operators
            if not called & wanted or relative in exempt:
                continue
            source = path.read_text()
            if "claimx_flow.kafka.clients import" not in source:
                unconfigured.append(relative)
    assert unconfigured == []
