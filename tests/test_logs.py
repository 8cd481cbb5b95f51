"""Log lines: ``LOG_FORMAT=json`` makes every line of a stage process one JSON object with its
stage (and the record it is about, where the code passes it), ``LOG_LEVEL`` filters, and no
secret reaches a line in either format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.lab.pipeline import settings_env, stage_command
from claimx_flow.runtime import logs
from dataflows._process import process_context
from tests.isolation import isolated_settings

REPO = Path(__file__).resolve().parent.parent
SECRET = "pw-L0g-never-print"


class Stderr:
    """What the process wrote on stderr (the handler writes to whatever ``sys.stderr`` is)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def text(self) -> str:
        return self.capsys.readouterr().err

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    """The root logger's handlers replaced for one test, then put back."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    yield Stderr(capsys)
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    sys.excepthook, threading.excepthook = saved[2], saved[3]
    logging.captureWarnings(False)


def test_a_json_line_carries_time_level_logger_message_and_context(
    captured: Stderr,
) -> None:
    logs.configure("json", logging.INFO, context={"stage": "enrich", "worker": 3})
    record = KafkaRecord("claimx.enrichment.pending", 4, 1234, None, b"k", b"v", [])
    log = logging.getLogger("claimx_flow.routing.failures")
    log.warning("%s: ignoring malformed failure headers", record.position, extra=logs.at(record))
    log.info("no record here")
    log.debug("below the level")

    first, second = captured.lines()
    assert first["level"] == "WARNING" and first["logger"] == "claimx_flow.routing.failures"
    assert (
        first["message"] == "claimx.enrichment.pending[4]@1234: ignoring malformed failure headers"
    )
    assert (first["stage"], first["worker"]) == ("enrich", 3)
    assert (first["topic"], first["partition"], first["offset"]) == (
        "claimx.enrichment.pending",
        4,
        1234,
    )
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "topic" not in second and second["stage"] == "enrich"


def test_operators_pass_plain_extras(captured: Stderr) -> None:
    """Code that cannot import this module (operators) names the record by attribute."""
    logs.configure("json", logging.INFO, context={"stage": "ingest", "worker": 0})
    logging.getLogger("operators.kafka").warning(
        "offset not published", extra={"topic": "t", "partition": 1, "worker": 5}
    )
    (line,) = captured.lines()
    assert (line["topic"], line["partition"], line["worker"]) == ("t", 1, 5)
    assert "offset" not in line


def test_secrets_never_reach_a_line_in_either_format(captured: Stderr) -> None:
    for log_format in get_args(logs.LogFormat):  # every format there is
        logs.configure(log_format, logging.DEBUG, secrets=[SECRET], context={"stage": "enrich"})
        log = logging.getLogger("claimx_flow.api.client")
        log.error("login failed for %s", f"https://user:{SECRET}@api.example.test/x")
        log.warning("retrying with password=%s and Authorization: Basic dXNlcjpwYXNz", "hunter2")
        try:
            raise RuntimeError(f"token {SECRET} rejected")
        except RuntimeError:
            log.exception("call failed")
    text = captured.text()
    for leaked in (SECRET, "hunter2", "dXNlcjpwYXNz"):
        assert leaked not in text
    assert text.count("***") >= 6
    json_lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any("RuntimeError" in line.get("exception", "") for line in json_lines)


def test_json_makes_uncaught_exceptions_and_warnings_lines_too(tmp_path: Path) -> None:
    code = (
        "import logging, warnings\n"
        "from claimx_flow.runtime import logs\n"
        "logs.configure('json', logging.INFO, context={'stage': 'upload'})\n"
        "warnings.warn('deprecated knob')\n"
        "raise ValueError('boom')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [r["level"] for r in records] == ["WARNING", "CRITICAL"]
    assert "deprecated knob" in records[0]["message"]
    assert "ValueError: boom" in records[1]["exception"]
    assert all(r["stage"] == "upload" for r in records)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_uncaught_exception_is_masked_in_either_format(tmp_path: Path, log_format: str) -> None:
    """Text is the default format: an exception no code caught is logged through the same
    masking handler, not printed in clear by Python's own hook."""
    code = (
        "import logging\n"
        "from claimx_flow.runtime import logs\n"
        f"logs.configure({log_format!r}, logging.INFO, secrets=[{SECRET!r}])\n"
        f"raise RuntimeError('login as bob:{SECRET} refused')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 1
    assert "RuntimeError: login as bob:*** refused" in done.stderr.replace("\\n", "\n")
    assert SECRET not in done.stderr


def test_levels_and_formats_are_read_leniently() -> None:
    assert logs.parse_format("JSON") == "json"
    assert logs.parse_format(None) == logs.parse_format("xml") == "text"
    assert logs.parse_level("debug") == logging.DEBUG
    assert logs.parse_level("loud", logging.WARNING) == logging.WARNING


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, {"stage": "enrich", "worker": 0}),
        (["dataflows.enrich:flow", "-i", "2", "-a", "a;b;c"], {}, {"stage": "enrich", "worker": 2}),
        (["dataflows.enrich:flow", "-w", "4"], {}, {"stage": "enrich", "worker": None}),
        ([], {"BYTEWAX_PROCESS_ID": "1"}, {"stage": "enrich", "worker": 1}),
        (
            [],
            {"BYTEWAX_POD_NAME": "claimx-enrich-3", "BYTEWAX_STATEFULSET_NAME": "claimx-enrich"},
            {"stage": "enrich", "worker": 3},
        ),
    ],
)
def test_the_worker_is_the_bytewax_process_when_it_runs_one_worker(
    argv: list[str], env: dict[str, str], expected: dict[str, object]
) -> None:
    assert process_context("enrich", argv, env) == expected


def test_a_real_stage_process_writes_only_json_lines_with_its_stage(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """ingest as ``python -m bytewax.run`` with recovery, LOG_FORMAT=json and LOG_LEVEL=DEBUG,
    on its own (empty) topics until they are drained: every line on stderr is one JSON object
    with the stage, and the secret in its environment is nowhere."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", claimx_stop_at_end=True)
    env = {
        **settings_env(settings),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "CLAIMX_HEALTH_PORT": "0",
        "CLAIMX_API_PASSWORD": SECRET,
    }
    done = subprocess.run(
        stage_command(settings, "ingest"),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records, "the stage logged nothing"
    assert all(r["stage"] == "ingest" and r["worker"] == 0 for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any("ingest starting" in r["message"] for r in records)
    assert SECRET not in done.stderr + done.stdout


def test_a_broker_that_is_down_is_said_once_a_minute_not_per_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real clients reconnecting to a closed port: librdkafka reports every attempt of every
    client (over a hundred lines a second from a stage during an outage); one line of each kind
    is kept per minute."""
    from confluent_kafka import Consumer, Producer

    from claimx_flow.config import Settings
    from claimx_flow.kafka.clients import LIBRDKAFKA_LOGGER, client_config
    from claimx_flow.lab.process import free_port

    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")  # nothing listens
    config = {**client_config(settings), "reconnect.backoff.max.ms": 100}
    caplog.set_level(logging.ERROR, logger=LIBRDKAFKA_LOGGER.name)
    producers = [Producer(config) for _ in range(3)]
    consumer = Consumer({**config, "group.id": "down"})
    consumer.subscribe(["anything"])
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        consumer.poll(0.1)
        for producer in producers:
            producer.poll(0)
    consumer.close()
    lines = [r.getMessage() for r in caplog.records if r.name == LIBRDKAFKA_LOGGER.name]
    refused = [line for line in lines if "Connection refused" in line]
    assert refused, lines  # said, ...
    assert len(lines) <= 6, lines  # ... but not for each of the 4 clients' ~40 attempts each


def test_the_command_line_keeps_the_azure_sdks_warnings_for_verbose(tmp_path: Path) -> None:
    """A credential chain that fails warned in 37 lines (three copies) before the command's own
    red line said the same; ``-v`` shows them."""
    script = (
        "import logging, sys\n"
        "from claimx_flow.cli import prepare\n"
        "prepare(verbose=sys.argv[1] == 'v')\n"
        "logging.getLogger('azure.identity').warning('DefaultAzureCredential failed')\n"
    )
    quiet, verbose = (
        subprocess.run(
            [sys.executable, "-c", script, flag],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        for flag in ("q", "v")
    )
    assert "DefaultAzureCredential" not in quiet.stderr
    assert "DefaultAzureCredential failed" in verbose.stderr
