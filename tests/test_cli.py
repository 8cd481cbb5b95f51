"""The ``claimx`` command loads each sub-command only when it runs; what ``--help`` lists for
one without loading it must be what the command itself says. Its conventions: ``--version``,
``--output json`` (one document on stdout), ``docs/cli.md`` generated from the commands, and,
away from a local stack, a missing required variable named in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from claimx_flow import terminal as cli_output
from claimx_flow.cli import COMMANDS, app, load_command
from claimx_flow.cli.docs import render
from claimx_flow.config import Settings
from claimx_flow.lab.pipeline import settings_env
from claimx_flow.startup.recovery import init_recovery, kafka_cluster_id
from claimx_flow.startup.recovery_state import target_offsets
from tests.isolation import isolated_settings

REPO = Path(__file__).resolve().parent.parent
CLAIMX = str(Path(sys.executable).with_name("claimx"))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    own = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
    assert own == COMMANDS[name].help


def test_help_loads_no_sub_command() -> None:
    """``claimx --help`` imports none of the sub-commands (and so none of the lab)."""
    probe = (
        "import sys; from claimx_flow.cli import app\n"
        "try: app(['--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('claimx_flow.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "claimx_flow.lab" not in loaded and "_cmd" not in loaded and "dlq" not in loaded


UNREACHABLE_BROKER_COMMANDS = [
    [CLAIMX, "lag"],
    [CLAIMX, "check"],
    [CLAIMX, "simulate", "events", "--count", "5", "--topic", "claimx.events"],
    [sys.executable, "-m", "claimx_flow.dlq", "list"],  # the runbook's DLQ tool path
]


def test_an_unreachable_broker_is_one_red_line_and_exit_2(tmp_path: Path) -> None:
    """With every required variable given (so in production mode, the default away from a
    local stack), an unreachable broker is the one error. The commands run side by side: each
    spends its Kafka timeout waiting."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # discard port: nothing listens
        "CLAIMX_API_URL": "http://127.0.0.1:9/service",
        "CLAIMX_API_USERNAME": "ops",
        "CLAIMX_API_PASSWORD": "pw-Kq3-never-print",
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
        "CLAIMX_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("CLAIMX_ENV", None)
    running = [
        (
            command,
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            ),
        )
        for command in UNREACHABLE_BROKER_COMMANDS
    ]
    for command, process in running:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, command
        assert "Traceback" not in stderr + stdout, command
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Kafka" in errors[0], (command, stderr)
        assert len(stderr.strip().splitlines()) == 1, (command, stderr)


def test_a_peer_failure_no_command_caught_is_still_one_masked_red_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The entry point's last guard: a raw Kafka error escaping a command (a leader moving
    mid-read) prints one line, with credentials and URL queries masked, and exits 2."""
    from confluent_kafka import KafkaError, KafkaException

    import claimx_flow.cli as cli

    def broken() -> None:
        raise KafkaException(
            KafkaError(
                KafkaError.NOT_LEADER_FOR_PARTITION,
                "leader moved; sasl.password=pw-Kq3 at https://host/x?sig=abc",
            )
        )

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.setattr(cli, "_entry_point", False)  # main() sets it; keep it to this test
    monkeypatch.setenv("CLAIMX_ENV", "local")  # and the environment it adopts
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: Kafka")
    assert "leader moved" in err and "KafkaError{" not in err  # librdkafka's sentence
    assert "pw-Kq3" not in err and "sig=abc" not in err


def test_the_dlq_module_shares_the_entry_point_guard(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m claimx_flow.dlq``, the runbook's DLQ tool path: a broken peer no command
    caught (a folder refused) is one masked red line and exit 2 there too, not a traceback."""
    import claimx_flow.dlq.cli as dlq_cli

    def broken(**_: object) -> None:
        raise PermissionError(13, "Permission denied: token=tk-Zz8 at https://h/x?sig=abc")

    monkeypatch.setattr(dlq_cli, "app", broken)
    monkeypatch.setenv("CLAIMX_ENV", "local")
    with pytest.raises(SystemExit) as exited:
        dlq_cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: PermissionError")
    assert "tk-Zz8" not in err and "sig=abc" not in err


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A process environment with no ClaimX or Kafka variable and no local stack."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "CLAIMX_", "ONELAKE_", "EVENTHUBS_", "LOG_"))
    }
    return {**env, "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"), **extra}


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["check"], ["KAFKA_BOOTSTRAP_SERVERS", "CLAIMX_API_URL", "CLAIMX_API_PASSWORD"]),
        (["lag"], ["KAFKA_BOOTSTRAP_SERVERS"]),
        (["dlq", "list"], ["KAFKA_BOOTSTRAP_SERVERS"]),
    ],
)
def test_away_from_a_local_stack_a_missing_variable_is_named_and_exit_2(
    command: list[str], named: list[str], tmp_path: Path
) -> None:
    """No CLAIMX_ENV and no local stack: production, where the embedded defaults (a local
    broker, the simulator) would be wrong, so the command stops before it connects."""
    done = subprocess.run(
        [CLAIMX, *command],
        capture_output=True,
        text=True,
        env=_bare_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: required but not set: ")
    assert all(name in line for name in named) and "CLAIMX_ENV=production" in line
    assert done.stdout == ""


def test_check_names_only_what_the_chosen_stages_need(tmp_path: Path) -> None:
    """ingest calls no API: only the broker is required for it."""
    done = subprocess.run(
        [CLAIMX, "check", "--stage", "ingest"],
        capture_output=True,
        text=True,
        env=_bare_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "KAFKA_BOOTSTRAP_SERVERS" in line and "CLAIMX_API" not in line


def test_check_takes_half_a_lakehouse_for_bad_settings(tmp_path: Path) -> None:
    """A workspace without its lakehouse was a FAIL row under "configuration pass", exit 1;
    bad settings are exit 2, one red line, before any peer is asked."""
    env = _bare_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", ONELAKE_WORKSPACE_ID="ws")
    done = subprocess.run(
        [CLAIMX, "check", "--stage", "upload"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "ONELAKE_WORKSPACE_ID and ONELAKE_LAKEHOUSE_ID must be set together" in line


def test_config_show_in_production_does_not_ask_for_the_broker(tmp_path: Path) -> None:
    """Showing the settings talks to no broker, so production without one still shows them."""
    done = subprocess.run(
        [CLAIMX, "config", "show", "-o", "json"],
        capture_output=True,
        text=True,
        env=_bare_env(tmp_path, CLAIMX_ENV="production"),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["variables"]["CLAIMX_ENV"] == "production"


def test_api_check_in_production_does_not_ask_for_the_broker(tmp_path: Path) -> None:
    """``api check`` needs the API's variables only: with them and no broker it gets past the
    settings and fails on the unreachable API, its own one red line."""
    env = _bare_env(
        tmp_path,
        CLAIMX_ENV="production",
        CLAIMX_API_URL="http://127.0.0.1:9/service",  # discard port: nothing listens
        CLAIMX_API_USERNAME="ops",
        CLAIMX_API_PASSWORD="pw-Vb8-never-print",
    )
    done = subprocess.run(
        [CLAIMX, "api", "check"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the ClaimX API")
    assert "required but not set" not in line and "KAFKA" not in line
    assert "pw-Vb8" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "extra",
    [{"CLAIMX_ENV": "local"}, {}],
    ids=["CLAIMX_ENV=local", "local stack found"],
)
def test_local_mode_keeps_the_embedded_defaults(extra: dict[str, str], tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()  # a stack recorded with nothing running: local, and no address taken
    (stack / "state.json").write_text("{}")
    env = {**_bare_env(tmp_path, **extra), "CLAIMX_STACK_DIR": str(stack)}
    done = subprocess.run(
        [CLAIMX, "config", "show", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    variables = json.loads(done.stdout)["variables"]
    assert variables["CLAIMX_ENV"] == "local"
    assert variables["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"


def test_lab_commands_are_local_by_nature(tmp_path: Path) -> None:
    """A lab command (here ``stack status``) never asks for production variables."""
    done = subprocess.run(
        [CLAIMX, "stack", "status"],
        capture_output=True,
        text=True,
        env=_bare_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert "required but not set" not in done.stderr + done.stdout


def test_version_is_the_installed_package() -> None:
    done = subprocess.run([CLAIMX, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"claimx {version('claimx-flow')}"


def test_importing_the_cli_stays_cheap() -> None:
    """``claimx --help`` must stay quick: importing the app (what ``--help`` pays before it
    prints) takes well under a second. Measured in a fresh interpreter, best of three, against
    a loose bound so a busy machine does not make it flaky."""
    probe = (
        "import time; t = time.perf_counter(); import claimx_flow.cli; "
        "print(time.perf_counter() - t)"
    )
    best = min(
        float(
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(3)
    )
    assert best < 1.0


def test_json_output_is_one_document_on_stdout(tmp_path: Path) -> None:
    env = {"CLAIMX_STACK_DIR": str(tmp_path / "no-stack"), "CLAIMX_API_PASSWORD": "pw-J7-secret"}
    result = CliRunner().invoke(app, ["config", "show", "--output", "json"], env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["variables"]["CLAIMX_API_PASSWORD"] == "**********"
    assert "pw-J7-secret" not in result.output
    assert result.stderr == ""


def test_docs_cli_md_is_generated_from_the_commands() -> None:
    """docs/cli.md is what ``python -m claimx_flow.cli.docs`` writes now; if this fails, run it
    and commit the page."""
    page = render()
    for name in COMMANDS:
        assert f"## `claimx {name}`" in page
    for text in ("`claimx dlq replay`", "`--output`, `-o` `table|json`", "`claimx recovery reset`"):
        assert text in page
    assert (REPO / "docs" / "cli.md").read_text() == page


@pytest.fixture
def stage_env(kafka_bootstrap: str, tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    """A pipeline of this test's own (topics created) and the environment that names it."""
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    return settings, {**settings_env(settings), "CLAIMX_STACK_DIR": str(tmp_path / "no-stack")}


def test_read_commands_print_one_json_document(
    stage_env: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = stage_env
    init_recovery(settings, "ingest", kafka_cluster_id(settings))
    runner = CliRunner()

    def document(*args: str, codes: tuple[int, ...] = (0,)) -> dict[str, Any]:
        result = runner.invoke(app, [*args, "-o", "json"], env=env)
        assert result.exit_code in codes, (args, result.output)
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    lag = document("lag", "--stage", "ingest")
    assert {row["topic"] for row in lag["lag"]} == {settings.claimx_events_topic}
    assert lag["lag"][0]["group"] == settings.consumer_group("ingester")
    assert lag["dlqs"] == [
        {
            "topic": settings.claimx_events_dlq_topic,
            "exists": True,
            "depth": 0,
            "partitions": [{"partition": p, "low": 0, "high": 0, "depth": 0} for p in range(2)],
        }
    ]
    topics = document("topics", "list", codes=(0, 1))
    by_name = {t["topic"]: t for t in topics["topics"]}
    assert by_name[settings.claimx_events_topic]["partitions"] == 2
    assert by_name[settings.claimx_events_topic]["exists"] is True
    checked = document("check", "--stage", "ingest", codes=(0, 1))
    assert checked["stages"] == ["ingest"]
    assert checked["checks"][0] == {
        "name": "configuration",
        "ok": True,
        "blocking": True,
        "unreachable": False,
        "detail": "settings valid",
    }
    shown = document("recovery", "show", "ingest")
    assert (shown["stage"], shown["resume_epoch"], shown["positions"]) == ("ingest", 1, [])


def test_recovery_reset_shows_its_plan_asks_and_backs_up_first(
    stage_env: tuple[Settings, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, env = stage_env
    directory = init_recovery(settings, "ingest", kafka_cluster_id(settings))
    runner = CliRunner()
    reset = ["recovery", "reset", "ingest", "--to-earliest"]

    def backups() -> list[Path]:
        return sorted(directory.glob("backup-*"))

    refused = runner.invoke(app, reset, env=env)  # no terminal, no --yes
    assert refused.exit_code == 2
    assert "refusing to reset without confirmation" in refused.output and "--yes" in refused.output
    planned = runner.invoke(app, [*reset, "--dry-run"], env=env, terminal_width=200)
    assert planned.exit_code == 0, planned.output
    assert "now" in planned.output and "after" in planned.output
    assert settings.claimx_events_topic in planned.output
    assert backups() == []

    monkeypatch.setattr(cli_output, "has_terminal", lambda: True)
    declined = runner.invoke(app, reset, env=env, input="n\n")
    assert declined.exit_code == 1 and "nothing changed" in declined.output
    assert settings.claimx_events_topic in declined.output  # the plan came before the question
    assert backups() == []

    done = runner.invoke(app, [*reset, "--yes"], env=env, terminal_width=300)
    assert done.exit_code == 0, done.output
    (backup,) = backups()
    assert str(backup) in done.output.replace("\n", "")
    # the markers as they were: init recorded the cluster; the reset then records the topics
    assert sorted(p.name for p in backup.iterdir()) == ["kafka-cluster-id", "part-0.sqlite3"]
    assert (directory / "kafka-topic-ids").is_file()
    assert (backup / "part-0.sqlite3").read_bytes()[:16] == b"SQLite format 3\x00"


def test_a_reset_to_a_time_before_1970_resumes_at_the_earliest_message(
    stage_env: tuple[Settings, dict[str, str]],
) -> None:
    """Kafka reads -1 ms as "the latest offset": 1969-12-31T23:59:59.999 would have skipped
    every message there. The same look-up serves ``dlq purge --before`` (which would then have
    deleted everything) and ``trace --since``."""
    settings, _ = stage_env
    topic = settings.claimx_events_topic
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for i in range(4):
        producer.produce(topic, key=b"k", value=b"v%d" % i, partition=i % 2)
    assert producer.flush(30) == 0
    partitions = [(topic, 0), (topic, 1)]
    latest = target_offsets(settings, partitions, "latest")
    assert latest == {(topic, 0): 2, (topic, 1): 2}
    for moment in ("1969-12-31T23:59:59.999+00:00", "1900-01-01T00:00:00+00:00"):
        earliest = target_offsets(settings, partitions, datetime.fromisoformat(moment))
        assert earliest == {(topic, 0): 0, (topic, 1): 0}, moment


@pytest.mark.parametrize(
    "command",
    [
        ["backfill", "{tmp}/no-such-export.jsonl", "--topic", "{topic}"],
        ["backfill", "{tmp}", "--topic", "{topic}"],
        ["recovery", "init", "ingest"],
    ],
)
def test_a_missing_or_refused_path_is_one_red_line(
    kafka_bootstrap: str, tmp_path: Path, command: list[str]
) -> None:
    """A file or folder that is not there, or not what it should be, is the operator's to
    mend: one line naming it and exit 2, no traceback (and no topic made for a bad export)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = _bare_env(
        tmp_path,
        CLAIMX_ENV="local",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        CLAIMX_DATA_DIR=str(blocker / "data"),  # under a file: not a directory
    )
    topic = f"backfill-{uuid.uuid4().hex[:8]}"
    args = [part.format(tmp=tmp_path, topic=topic) for part in command]
    done = subprocess.run([CLAIMX, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error:") and str(tmp_path) in line
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert topic not in admin.list_topics(timeout=15).topics


@pytest.mark.parametrize(
    ("command", "env"),
    [
        (["trace", "evt", "--since", "100000000d"], {}),
        (["top", "--once", "--interval", "inf", "-e", "ingest=127.0.0.1:1", "-o", "json"], {}),
        (["top", "--once", "--timeout", "inf", "-e", "ingest=127.0.0.1:1", "-o", "json"], {}),
        (["top", "--once", "--endpoints-file", "{tmp}/utf16.txt", "-o", "json"], {}),
        (["api", "check"], {"CLAIMX_API_TIMEOUT_SECONDS": "inf"}),
        (["api", "check"], {"CLAIMX_API_TIMEOUT_SECONDS": "nan"}),
    ],
)
def test_a_value_out_of_range_is_refused_in_words_not_a_traceback(
    tmp_path: Path, command: list[str], env: dict[str, str]
) -> None:
    """Past what a date or a duration holds, or a file in another encoding: each was a
    traceback (an OverflowError, a UnicodeDecodeError). (The Delta commands' numbers:
    ``tests/delta/test_delta_cli.py``.)"""
    (tmp_path / "utf16.txt").write_bytes("ingest 127.0.0.1:1\n".encode("utf-16"))
    args = [part.format(tmp=tmp_path) for part in command]
    done = subprocess.run(
        [CLAIMX, *args],
        capture_output=True,
        text=True,
        env=_bare_env(tmp_path, CLAIMX_ENV="local", CLAIMX_DATA_DIR=str(tmp_path), **env),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout and "panic" not in done.stderr.lower()


def test_a_number_json_cannot_hold_is_null(capsys: pytest.CaptureFixture[str]) -> None:
    """A stage's metrics may hold NaN or an infinity, which ``json`` would print as bare
    ``NaN``: not JSON, so ``-o json | jq`` would fail on it."""
    cli_output.emit_json({"lag": float("nan"), "rates": [float("inf"), 1.5], "n": 3})
    assert json.loads(capsys.readouterr().out) == {"lag": None, "rates": [None, 1.5], "n": 3}


def test_a_misspelt_stage_is_named_before_kafka_is_asked(tmp_path: Path) -> None:
    env = _bare_env(tmp_path, CLAIMX_ENV="local", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    done = subprocess.run(
        [CLAIMX, "recovery", "init", "ingset"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "ingset" in done.stderr and "Traceback" not in done.stderr
