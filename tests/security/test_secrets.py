"""Secrets never leave the process: run the pipeline with known secret values against an API
that echoes the request's ``Authorization`` header back in its error bodies, then search
everything the run emitted — stage logs, ``/metrics``, every message (value and headers) on
every pipeline topic, and the output of the CLI commands an operator runs — for every secret,
in clear and in the forms it travels in (Basic auth's base64).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from claimx_flow.api import ClaimXApiClient
from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.config import Settings
from claimx_flow.kafka.topics import pipeline_topics
from claimx_flow.lab.pipeline import Pipeline, settings_env
from tests.e2e.conftest import PipelineRun
from tests.isolation import isolated_settings
from tests.security import hostile

API_USER = "claimx-integration"
API_PASSWORD = "Api-Pa55-9f81c2d7"
API_TOKEN = "dG9rZW4tc2VjcmV0LTQ0YzE3"
SASL_PASSWORD = "Sasl-Pa55-2be0a6"
STORAGE_KEY = "U3RvcmFnZUtleS0xYjZmZTk5YzdkNGE="
EVENTHUBS = (
    "Endpoint=sb://claimx-test.servicebus.windows.net/;SharedAccessKeyName=send;"
    "SharedAccessKey=EhKey-6d1f0c83aa=="
)
SECRETS = {
    "API password": API_PASSWORD,
    "API password as Basic auth": base64.b64encode(f"{API_USER}:{API_PASSWORD}".encode()).decode(),
    "API token": API_TOKEN,
    "SASL password": SASL_PASSWORD,
    "storage key": STORAGE_KEY,
    "Event Hubs connection string": EVENTHUBS,
    "Event Hubs key": "EhKey-6d1f0c83aa",
}
# project id → what the echoing API answers for it
ECHO_STATUS = {"5000100": 500, "5000101": 404, "5000102": 400, "5000103": 401}
# Project 1 is what start-up checks ask for: a 404 proves reach and credentials (and echoes).
PROBE_STATUS = 404


async def echo_headers(exchange: hostile.Exchange) -> None:
    """Every error body carries the request's headers, Authorization first: the worst an API
    (or a proxy in front of it) can do with a credential it was sent."""
    request = exchange.request
    project = request.path.rsplit("/", 1)[-1]
    lines = [f"{name}: {value}" for name, value in sorted(request.headers.items())]
    lines.sort(key=lambda line: not line.lower().startswith("authorization"))
    body = json.dumps({"headers": "; ".join(lines), "echo": f"{request.method} {request.target}"})
    status = PROBE_STATUS if project == "1" else ECHO_STATUS.get(project, 404)
    await exchange.respond(status, body.encode(), {"Content-Type": "application/json"})


@pytest.fixture
def echo_api() -> Iterator[hostile.HostileServer]:
    with hostile.serving(echo_headers) as server:
        yield server


def secret_settings(
    kafka_bootstrap: str, api_url: str, tmp_path: Path, *, create_topics: bool = True
) -> Settings:
    """Isolated settings with a known value for every secret the pipeline knows."""
    return isolated_settings(
        kafka_bootstrap,
        tmp_path / "data",
        create_topics=create_topics,
        kafka_security_protocol="PLAINTEXT",  # the Event Hubs string below would say SASL_SSL
        kafka_sasl_username="claimx",
        kafka_sasl_password=SecretStr(SASL_PASSWORD),
        eventhubs_connection_string=SecretStr(EVENTHUBS),
        claimx_api_url=api_url,
        claimx_api_username=API_USER,
        claimx_api_password=SecretStr(API_PASSWORD),
        claimx_api_timeout_seconds=3,
        claimx_api_max_retries=0,
        onelake_account_key=SecretStr(STORAGE_KEY),
        claimx_topic_partitions=1,
    )


def every_message(settings: Settings, topics: list[str]) -> list[Any]:
    """Every message on ``topics``, read once to the end with one consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"search-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(timeout=10)
    parts = [TopicPartition(t, p, 0) for t in topics for p in metadata.topics[t].partitions]
    consumer.assign(parts)
    messages, ended, deadline = [], 0, time.monotonic() + 30
    while ended < len(parts) and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error() is not None:
            ended += 1
        else:
            messages.append(message)
    consumer.close()
    return messages


def leaks(sources: dict[str, str | bytes]) -> list[str]:
    found = []
    for where, content in sources.items():
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        found += [f"{what} in {where}" for what, secret in SECRETS.items() if secret in text]
    return found


def cli(env: dict[str, str], *args: str, cwd: Path) -> str:
    (output,) = clis([("", env, list(args))], cwd).values()
    return output


def clis(runs: list[tuple[str, dict[str, str], list[str]]], cwd: Path) -> dict[str, str]:
    """Run ``claimx`` commands side by side; each one's exit code and whole output by name."""
    started = [
        (
            f"claimx {' '.join(args)}{note}",
            subprocess.Popen(
                [sys.executable, "-m", "claimx_flow", *args],
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for note, env, args in runs
    ]
    outputs = {}
    for name, process in started:
        output, _ = process.communicate(timeout=60)
        outputs[name] = f"$ {name} (exit {process.returncode})\n{output}"
    return outputs


def test_no_secret_appears_in_anything_a_run_emits(
    kafka_bootstrap: str, echo_api: hostile.HostileServer, tmp_path: Path
) -> None:
    settings = secret_settings(kafka_bootstrap, echo_api.url("/service/cxedirest"), tmp_path)
    env = settings_env(settings)
    run = PipelineRun(settings, Pipeline(settings, env, tmp_path / "logs"), tmp_path)
    events = [
        json.dumps(
            {
                "event_type": "PROJECT_CREATED",
                "project_id": p,
                "ingested_at": "2024-03-01T10:00:00Z",
            }
        )
        for p in ECHO_STATUS
    ]
    run.produce([("k", line) for line in events] + [("k", b"{not json")])
    emitted: dict[str, str | bytes] = {}
    try:
        run.pipeline.start(["ingest", "enrich"])
        failure_topics = [settings.claimx_enrichment_dlq_topic, *settings.enrichment_retry_topics]
        run.wait_for(
            lambda: len(every_message(settings, failure_topics)) >= len(ECHO_STATUS),
            timeout_s=60,
            what="every echoed failure routed",
        )
        for stage in ("ingest", "enrich"):
            port = run.pipeline.health_ports[stage][0]
            for path in ("/metrics", "/health/ready", "/health/live"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                        emitted[f"{stage} {path}"] = r.read()
                except urllib.error.HTTPError as error:  # a failing probe's body counts too
                    emitted[f"{stage} {path}"] = error.read()
        for message in every_message(settings, [t.name for t in pipeline_topics(settings)]):
            where = f"{message.topic()}@{message.offset()}"
            emitted[f"{where} value"] = message.value() or b""
            emitted[f"{where} headers"] = repr(message.headers())
    finally:
        run.pipeline.stop()
    cwd = tmp_path / "cli"
    cwd.mkdir()
    cli_env = {**env, "CLAIMX_STACK_DIR": str(tmp_path / "stack"), "COLUMNS": "200"}
    token_env = {**cli_env, "CLAIMX_API_TOKEN": API_TOKEN}
    echoing = ["api", "check", "--project-id", "5000100"]  # a 500 with the headers echoed
    commands = [["--help"], ["config", "show"], ["stack", "status"], echoing]
    commands += [["dlq", "inspect", "enrichment", "--json"]]
    runs = [("", cli_env, args) for args in commands] + [(" (token)", token_env, echoing)]
    emitted |= clis(runs, cwd)
    for log in (tmp_path / "logs").glob("*.log"):
        emitted[f"log {log.name}"] = log.read_text()

    assert not leaks(emitted), leaks(emitted)
    # The echoed bodies did reach what was searched (redacted), so the search meant something.
    for name in (
        "claimx api check --project-id 5000100",
        "claimx api check --project-id 5000100 (token)",
    ):
        assert "authorization" in str(emitted[name]).lower(), emitted[name]
    echoed = [
        k for k, v in emitted.items() if k.endswith("headers") and "authorization: Basic" in v
    ]
    assert len(echoed) >= 3


def test_exception_text_and_reprs_hold_no_secret(
    echo_api: hostile.HostileServer, tmp_path: Path
) -> None:
    """What a traceback would print: the settings, the client and the API's error."""
    import asyncio

    api_url = echo_api.url("/service/cxedirest")
    settings = secret_settings("127.0.0.1:9", api_url, tmp_path, create_topics=False)

    async def failing_call(project: str) -> ClaimXApiError:
        async with ClaimXApiClient(settings) as client:
            try:
                await client.get_project(project)
            except ClaimXApiError as error:
                return error
        raise AssertionError("the echo API never answers a project")

    errors = [asyncio.run(failing_call(p)) for p in ECHO_STATUS]
    texts: dict[str, str | bytes] = {
        "settings repr": repr(settings),
        "settings str": str(settings),
        "settings dump": str(settings.model_dump()),
        "client repr": repr(ClaimXApiClient(settings)),
        **{f"error {e.status}": f"{e!s} {e!r} {e.message}" for e in errors},
    }
    assert {e.status for e in errors} == set(ECHO_STATUS.values())
    assert all("authorization" in e.message.lower() for e in errors)  # echoed, and masked
    assert not leaks(texts), leaks(texts)


def test_stack_status_of_a_running_stack_shows_no_secret(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``claimx stack status`` on a real local stack (the simulator; Kafka is the session's),
    with every secret set in the environment it runs in."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLAIMX_STACK_DIR": str(tmp_path / "stack"),
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "KAFKA_SASL_USERNAME": "claimx",
        "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "CLAIMX_API_PASSWORD": API_PASSWORD,
        "CLAIMX_API_TOKEN": API_TOKEN,
        "ONELAKE_ACCOUNT_KEY": STORAGE_KEY,
        "EVENTHUBS_CONNECTION_STRING": EVENTHUBS,
    }
    env.pop("CLAIMX_API_URL", None)
    outputs: dict[str, str | bytes] = {}
    try:
        outputs["stack up"] = cli(env, "stack", "up", cwd=tmp_path)
        outputs["stack status"] = cli(env, "stack", "status", cwd=tmp_path)
    finally:
        outputs["stack down"] = cli(env, "stack", "down", "--yes", cwd=tmp_path)
    assert "simulator" in outputs["stack status"] and "ready" in outputs["stack status"]
    assert not leaks(outputs), leaks(outputs)
