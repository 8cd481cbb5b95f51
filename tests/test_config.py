"""Settings: every runbook variable is read, YAML sits under the environment, errors name the
variable, and secrets never print."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.config import Settings, env_example, env_name, load_settings, secret_variables
from claimx_flow.errors import ConfigError
from claimx_flow.kafka.clients import client_config

# (variable, value as an operator writes it, field, value the pipeline sees)
RUNBOOK_VARIABLES: list[tuple[str, str, str, Any]] = [
    ("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092", "kafka_bootstrap_servers", "b1:9092,b2:9092"),
    ("KAFKA_CONSUMER_GROUP_PREFIX", "cx", "kafka_consumer_group_prefix", "cx"),
    ("KAFKA_SECURITY_PROTOCOL", "SSL", "kafka_security_protocol", "SSL"),
    ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "kafka_sasl_mechanism", "SCRAM-SHA-512"),
    ("KAFKA_SASL_USERNAME", "svc", "kafka_sasl_username", "svc"),
    (
        "CLAIMX_API_URL",
        "https://api.example.test/service/cxedirest/",
        "claimx_api_url",
        "https://api.example.test/service/cxedirest",
    ),
    ("CLAIMX_API_USERNAME", "api-user", "claimx_api_username", "api-user"),
    ("CLAIMX_API_TIMEOUT_SECONDS", "12.5", "claimx_api_timeout_seconds", 12.5),
    ("CLAIMX_API_MAX_RETRIES", "5", "claimx_api_max_retries", 5),
    ("CLAIMX_API_CONCURRENCY", "40", "claimx_api_concurrency", 40),
    (
        "CLAIMX_EVENTS_TOPIC",
        "claimx.events.backfill",
        "claimx_events_topic",
        "claimx.events.backfill",
    ),
    ("CLAIMX_ENRICHMENT_PENDING_TOPIC", "e.p", "claimx_enrichment_pending_topic", "e.p"),
    ("CLAIMX_DOWNLOADS_PENDING_TOPIC", "d.p", "claimx_downloads_pending_topic", "d.p"),
    ("CLAIMX_DOWNLOADS_RESULTS_TOPIC", "d.r", "claimx_downloads_results_topic", "d.r"),
    ("CLAIMX_DLQ_TOPIC", "claimx.dlq", "claimx_enrichment_dlq_topic", "claimx.dlq"),
    ("ONELAKE_WORKSPACE_ID", "ws-1", "onelake_workspace_id", "ws-1"),
    ("ONELAKE_LAKEHOUSE_ID", "lh-1", "onelake_lakehouse_id", "lh-1"),
    (
        "ONELAKE_ENDPOINT",
        "https://onelake.example.test",
        "onelake_endpoint",
        "https://onelake.example.test",
    ),
    ("RETRY_DELAYS", "10,20,40,80", "retry_delays", [10, 20, 40, 80]),
    ("MAX_RETRIES", "2", "max_retries", 2),
    ("DOWNLOAD_CONCURRENCY", "20", "download_concurrency", 20),
    ("DOWNLOAD_BATCH_SIZE", "50", "download_batch_size", 50),
    ("CACHE_DIR", "/tmp/claimx-cache", "cache_dir", Path("/tmp/claimx-cache")),
    ("ENRICHMENT_BATCH_SIZE", "250", "enrichment_batch_size", 250),
    ("ENABLE_DELTA_WRITES", "false", "enable_delta_writes", False),
    ("CLAIMX_DATA_DIR", "/srv/claimx", "claimx_data_dir", Path("/srv/claimx")),
]

SECRETS = {
    "CLAIMX_API_PASSWORD": "pw-Zx81-never-print",
    "CLAIMX_API_TOKEN": "tok-Qa77-never-print",
    "KAFKA_SASL_PASSWORD": "sasl-Lm55-never-print",
    "ONELAKE_ACCOUNT_KEY": "key-Rt09-never-print",
}


@pytest.mark.parametrize(("variable", "raw", "field", "expected"), RUNBOOK_VARIABLES)
def test_every_runbook_variable_is_read(
    clean_env: pytest.MonkeyPatch, variable: str, raw: str, field: str, expected: Any
) -> None:
    clean_env.setenv(variable, raw)
    assert getattr(load_settings(), field) == expected


def test_defaults_are_the_embedded_stack(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.retry_delays == [300, 600, 1200, 2400]
    assert settings.max_retries == 4
    assert settings.tables_dir == Path("claimx-data/tables")
    assert settings.effective_cache_dir == Path("claimx-data/cache")
    assert settings.recovery_dir("enrich") == Path("claimx-data/recovery/enrich")
    assert settings.enrichment_retry_topics == [
        "claimx.enrichment.pending.retry.5m",
        "claimx.enrichment.pending.retry.10m",
        "claimx.enrichment.pending.retry.20m",
        "claimx.enrichment.pending.retry.40m",
    ]
    assert settings.download_retry_topics[0] == "claimx.downloads.pending.retry.300s"
    assert settings.consumer_group("enricher") == "claimx-enricher"


CONFIG_YAML = """\
kafka:
  bootstrap_servers: "yaml-broker:9092"
  consumer_group_prefix: "from-yaml"
claimx:
  api_url: "https://yaml.example.test"
  api_concurrency: 7
topics:
  events: "yaml.events"
retry:
  delays: [60, 120]
  max_retries: 2
"""


def test_yaml_fills_in_and_environment_wins(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG_YAML)
    clean_env.setenv("CLAIMX_API_CONCURRENCY", "30")
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "env-broker:9092")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "env-broker:9092"  # env over yaml
    assert settings.claimx_api_concurrency == 30  # env over yaml
    assert settings.kafka_consumer_group_prefix == "from-yaml"  # yaml over default
    assert settings.claimx_api_url == "https://yaml.example.test"
    assert settings.claimx_events_topic == "yaml.events"
    assert settings.retry_delays == [60, 120]
    assert settings.enrichment_retry_topics == [
        "claimx.enrichment.pending.retry.1m",
        "claimx.enrichment.pending.retry.2m",
    ]


def test_config_file_from_variable(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text("claimx:\n  api_max_retries: 9\n")
    clean_env.setenv("CLAIMX_CONFIG_FILE", str(path))
    assert load_settings().claimx_api_max_retries == 9
    clean_env.setenv("CLAIMX_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="CLAIMX_CONFIG_FILE"):
        load_settings()


@pytest.mark.parametrize(
    "line",
    [
        "  api_password: @pw-SECRET-1",
        '  api_password: "pw-SECRET-1',
        "  api_password: [pw-SECRET-1",
    ],
)
def test_a_yaml_typo_is_placed_without_quoting_its_line(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, line: str
) -> None:
    """PyYAML quotes the line it could not read; the line a typo breaks may be a password's."""
    (tmp_path / "config.yaml").write_text(f"claimx:\n{line}\n")
    with pytest.raises(
        ConfigError, match=r"CLAIMX_CONFIG_FILE: .* at line \d+, column \d+"
    ) as caught:
        load_settings()
    assert "SECRET" not in str(caught.value)


def test_unknown_yaml_key_is_named(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("kafka:\n  bootstrap: x\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("CLAIMX_API_CONCURRENCY", "lots"),
        ("CLAIMX_API_CONCURRENCY", "0"),
        ("DOWNLOAD_BATCH_SIZE", "-3"),
        ("RETRY_DELAYS", "300,abc"),
        ("RETRY_DELAYS", "300,300"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("CLAIMX_API_URL", "ftp://api"),
        ("ENABLE_DELTA_WRITES", "maybe"),
        ("MAX_RETRIES", "9"),
    ],
)
def test_a_bad_value_names_its_variable(
    clean_env: pytest.MonkeyPatch, variable: str, raw: str
) -> None:
    clean_env.setenv(variable, raw)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in str(caught.value)


def test_sasl_requires_credentials(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME"):
        load_settings()


def _with_secrets(env: pytest.MonkeyPatch) -> Settings:
    for name, value in SECRETS.items():
        env.setenv(name, value)
    env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("KAFKA_SASL_USERNAME", "svc")
    env.setenv("CLAIMX_API_USERNAME", "api-user")
    return load_settings()


def test_secrets_are_held_but_never_printed(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _with_secrets(clean_env)
    assert settings.claimx_api_password is not None
    assert settings.claimx_api_password.get_secret_value() == SECRETS["CLAIMX_API_PASSWORD"]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    rendered = [repr(settings), str(settings), settings.model_dump_json(), caplog.text]
    for secret in SECRETS.values():
        for text in rendered:
            assert secret not in text


def test_a_bad_secret_is_not_echoed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CLAIMX_API_PASSWORD", "x")
    clean_env.setenv("CLAIMX_API_CONCURRENCY", "pw-in-the-wrong-place")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "pw-in-the-wrong-place" not in str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["CLAIMX_API_PASSWORD", "CLAIMX_API_TOKEN", "KAFKA_SASL_PASSWORD", "ONELAKE_ACCOUNT_KEY"],
)
def test_a_credential_read_from_a_file_loses_its_line_break(
    clean_env: pytest.MonkeyPatch, name: str
) -> None:
    """``kubectl create secret --from-file`` keeps the file's last line break: a token kept it
    into the Authorization header (a traceback), a password into a refused login."""
    clean_env.setenv(name, "S3cret-Value\r\n")
    secret = getattr(Settings(), name.lower())
    assert secret.get_secret_value() == "S3cret-Value"


def test_a_token_with_a_control_character_is_named_not_shown(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("CLAIMX_API_TOKEN", "Tok\ten-7")
    with pytest.raises(ConfigError) as raised:
        load_settings(require_kafka=False)
    assert "CLAIMX_API_TOKEN: holds a control character" in str(raised.value)
    assert "Tok" not in str(raised.value)


def test_a_value_in_brackets_is_shown_as_it_is(clean_env: pytest.MonkeyPatch) -> None:
    """Values are data, not Rich markup: ``[/]`` in a path was a MarkupError traceback."""
    clean_env.setenv("CLAIMX_DATA_DIR", "/tmp/claims[/]/[bold]x")
    result = CliRunner().invoke(app, ["config", "show"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "/tmp/claims[/]/[bold]x" in result.output


def test_an_empty_path_is_unset_or_named_and_a_missing_ca_bundle_is_named(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``CACHE_DIR=`` was the working directory; ``KAFKA_SSL_CA_LOCATION`` naming no file
    reached librdkafka, whose error (``BIO lib``) named neither the variable nor the file."""
    clean_env.setenv("CACHE_DIR", "")
    clean_env.setenv("KAFKA_SSL_CA_LOCATION", "")
    settings = Settings()
    assert settings.cache_dir is None and settings.kafka_ssl_ca_location is None
    assert settings.effective_cache_dir == settings.claimx_data_dir / "cache"

    clean_env.setenv("KAFKA_SSL_CA_LOCATION", str(tmp_path / "ca.pem"))
    with pytest.raises(ConfigError, match=r"KAFKA_SSL_CA_LOCATION: no file at .*ca\.pem"):
        load_settings()
    # A command that never talks to Kafka runs where the pod's file is not (a laptop).
    assert load_settings(require_kafka=False).kafka_ssl_ca_location == tmp_path / "ca.pem"
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings().kafka_ssl_ca_location == tmp_path / "ca.pem"
    clean_env.setenv("KAFKA_SSL_CA_LOCATION", "probe")  # librdkafka's: the system's CAs
    assert str(load_settings().kafka_ssl_ca_location) == "probe"

    clean_env.setenv("CLAIMX_DATA_DIR", " ")
    with pytest.raises(ConfigError, match="CLAIMX_DATA_DIR: is empty"):
        load_settings()


def test_cli_help_and_config_show_hide_secrets(clean_env: pytest.MonkeyPatch) -> None:
    _with_secrets(clean_env)
    runner = CliRunner()
    outputs = [
        runner.invoke(app, args).output
        for args in (
            ["--help"],
            ["stack", "--help"],
            ["topics", "create", "--help"],
            ["config", "show"],
        )
    ]
    assert "CLAIMX_API_PASSWORD" in outputs[-1]
    for secret in SECRETS.values():
        for output in outputs:
            assert secret not in output


EVENT_HUBS = (
    "Endpoint=sb://claimx-prod.servicebus.windows.net/;"
    "SharedAccessKeyName=pipeline;SharedAccessKey=EhKey-Zz93-never-print="
)


def test_an_event_hubs_connection_string_configures_every_kafka_client(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv("EVENTHUBS_CONNECTION_STRING", EVENT_HUBS)
    settings = load_settings()
    config = client_config(settings)
    assert config["bootstrap.servers"] == "claimx-prod.servicebus.windows.net:9093"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"
    assert config["sasl.username"] == "$ConnectionString"
    assert config["sasl.password"] == EVENT_HUBS
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("%s %r", settings, settings)
    shown = CliRunner().invoke(app, ["config", "show"]).output
    for text in (repr(settings), settings.model_dump_json(), caplog.text, shown):
        assert "EhKey-Zz93" not in text
    assert EVENT_HUBS in settings.secret_values()


def test_explicit_kafka_settings_win_over_the_connection_string(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("EVENTHUBS_CONNECTION_STRING", EVENT_HUBS)
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "proxy.internal:9093")
    assert load_settings().kafka_bootstrap_servers == "proxy.internal:9093"


def test_a_connection_string_without_endpoint_is_named_not_echoed(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("EVENTHUBS_CONNECTION_STRING", "SharedAccessKey=EhKey-Zz93-never-print=")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "EVENTHUBS_CONNECTION_STRING" in str(caught.value)
    assert "EhKey-Zz93" not in str(caught.value)


# Production mode ---------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
PRODUCTION_API = {
    "KAFKA_BOOTSTRAP_SERVERS": "b1:9092",
    "CLAIMX_API_URL": "https://api.example.test/service/cxedirest",
    "CLAIMX_API_USERNAME": "api-user",
    "CLAIMX_API_PASSWORD": "pw-Pr0d-never-print",
}


def test_settings_built_in_code_or_without_claimx_env_are_local(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert Settings().claimx_env == "local"
    assert load_settings(require_api=True).claimx_env == "local"  # nothing enforced


def test_production_names_each_missing_required_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CLAIMX_ENV", "production")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(caught.value)
    assert "CLAIMX_API" not in str(caught.value)  # only what calls the API needs those
    assert load_settings(require_kafka=False).claimx_env == "production"  # e.g. Delta upkeep
    with pytest.raises(ConfigError) as caught:
        load_settings(require_api=True)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CLAIMX_API_URL", "CLAIMX_API_USERNAME"):
        assert name in str(caught.value)
    for name, value in PRODUCTION_API.items():
        clean_env.setenv(name, value)
    settings = load_settings(require_api=True)
    assert settings.claimx_env == "production"
    clean_env.delenv("CLAIMX_API_PASSWORD")
    with pytest.raises(ConfigError, match="CLAIMX_API_PASSWORD"):
        load_settings(require_api=True)
    clean_env.setenv("CLAIMX_API_TOKEN", "tok-Pr0d-never-print")  # a token stands for both
    assert load_settings(require_api=True).claimx_api_token is not None


@pytest.mark.parametrize(
    "given",
    [
        {"KAFKA_BOOTSTRAP_SERVERS": "b1:9092"},
        {"EVENTHUBS_CONNECTION_STRING": EVENT_HUBS},
        {"CLAIMX_CONFIG_FILE": "kafka.yaml"},
    ],
    ids=["variable", "event hubs", "config.yaml"],
)
def test_production_takes_the_broker_from_any_source(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, given: dict[str, str]
) -> None:
    (tmp_path / "kafka.yaml").write_text("kafka:\n  bootstrap_servers: y1:9092\n")
    clean_env.setenv("CLAIMX_ENV", "PRODUCTION")  # any case
    for name, value in given.items():
        clean_env.setenv(name, value)
    assert load_settings().claimx_env == "production"


def test_production_does_not_take_an_empty_value(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CLAIMX_ENV", "production")
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings()
    clean_env.setenv("CLAIMX_ENV", "staging")
    with pytest.raises(ConfigError, match="CLAIMX_ENV"):
        load_settings()


def _stage_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A stage pod's environment before its configuration: no ClaimX, Kafka or log variable,
    no CLAIMX_ENV and no local stack."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "CLAIMX_", "ONELAKE_", "EVENTHUBS_", "LOG_", "BYTEWAX_"))
    }
    return {
        **env,
        "PYTHONPATH": str(REPO),
        "CLAIMX_STACK_DIR": str(tmp_path / "no-stack"),
        "CLAIMX_DATA_DIR": str(tmp_path / "data"),
        "CLAIMX_HEALTH_PORT": "0",
        **extra,
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_stage_process_without_its_broker_stops_naming_it(
    tmp_path: Path, log_format: str
) -> None:
    """``python -m bytewax.run dataflows.ingest`` as a pod starts it, with KAFKA_BOOTSTRAP_SERVERS
    forgotten: exit 2 and one line (in the chosen log format) naming the variable, instead of
    tailing a broker on 127.0.0.1."""
    env = _stage_env(tmp_path, LOG_FORMAT=log_format, CLAIMX_API_PASSWORD="pw-St4ge-secret")
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.ingest"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "KAFKA_BOOTSTRAP_SERVERS" in line and "CLAIMX_ENV=production" in line
    assert "CLAIMX_API" not in line  # ingest calls no API
    assert "pw-St4ge-secret" not in done.stderr + done.stdout
    if log_format == "json":
        record = json.loads(line)
        assert (record["level"], record["stage"]) == ("ERROR", "ingest")
        assert "KAFKA_BOOTSTRAP_SERVERS" in record["message"]


def test_a_stack_folder_left_behind_is_not_a_local_stack(tmp_path: Path) -> None:
    """``claimx stack down`` leaves ``.claimx-stack/``; a command run there later is still a
    production command, refusing the embedded broker (``stack up`` records a stack in it: see
    ``tests/test_cli.py``, local mode)."""
    (tmp_path / ".claimx-stack").mkdir()
    env = _stage_env(tmp_path)
    del env["CLAIMX_STACK_DIR"]
    done = subprocess.run(
        [sys.executable, "-m", "claimx_flow", "lag"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout
    assert "KAFKA_BOOTSTRAP_SERVERS" in done.stderr and "production" in done.stderr


def test_an_api_stage_also_needs_the_api_and_credentials(tmp_path: Path) -> None:
    env = _stage_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "dataflows.enrich"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "CLAIMX_API_URL" in line and "CLAIMX_API_USERNAME" in line
    assert "KAFKA_BOOTSTRAP_SERVERS;" not in line


# .env.example ------------------------------------------------------------------------------


def test_every_setting_says_what_it_means() -> None:
    undescribed = [name for name, info in Settings.model_fields.items() if not info.description]
    assert not undescribed


def test_env_example_is_generated_from_the_settings() -> None:
    """.env.example is what ``claimx config example`` prints now; if this fails, run
    ``claimx config example > .env.example`` and commit it."""
    text = env_example()
    assert (REPO / ".env.example").read_text() == text
    for name in Settings.model_fields:
        assert f"\n# {env_name(name)}=" in text
    for variable in secret_variables():
        assert f"\n# {variable}=\n" in text  # a secret never gets a value, not even a default
    assert "\n# KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092\n" in text
    assert "\n# RETRY_DELAYS=300,600,1200,2400\n" in text
    assert "\n# LOG_FORMAT=text\n" in text and "\n# CLAIMX_ENV=local\n" in text


def test_env_example_sets_nothing_when_loaded_as_is() -> None:
    """Every line is a comment: sourcing it unedited cannot pass for a production setting."""
    lines = (REPO / ".env.example").read_text().splitlines()
    assert all(not line or line.startswith("#") for line in lines)


@pytest.mark.parametrize("text", [b"\xff\xfeclaimx:\n", "claimx:\n".encode("utf-16")])
def test_a_config_file_that_is_not_utf8_is_one_message(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, text: bytes
) -> None:
    """A file saved as UTF-16 (Windows editors do) is a ConfigError naming it, not a
    ``UnicodeDecodeError`` traceback from the CLI."""
    (tmp_path / "config.yaml").write_bytes(text)
    with pytest.raises(ConfigError, match=r"CLAIMX_CONFIG_FILE: cannot read config\.yaml"):
        load_settings()


def test_the_cli_masks_the_secrets_of_the_config_file_too(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A peer's error may echo what it was given: the CLI's red line masks the secrets of
    config.yaml as well as those of the environment, before any settings are built."""
    from claimx_flow.terminal import error_line

    (tmp_path / "config.yaml").write_text(
        "claimx:\n  api_password: Zq9unusualPW\nonelake:\n  account_key: Kk7unusualKEY==\n"
    )
    clean_env.setenv("KAFKA_SASL_PASSWORD", "Ev3unusualENV")
    line = error_line("login refused for Zq9unusualPW, key Kk7unusualKEY==, sasl Ev3unusualENV")
    assert "unusual" not in line, line
    (tmp_path / "config.yaml").write_bytes(b"\xff")  # unreadable: the environment's still masked
    assert "Ev3unusualENV" not in error_line("sasl Ev3unusualENV")


def test_config_show_masks_a_url_query(clean_env: pytest.MonkeyPatch) -> None:
    """An endpoint may carry a grant in its query (a SAS token on a storage URL): ``config
    show`` keeps where it points and masks what the query grants."""
    clean_env.setenv("ONELAKE_ENDPOINT", "https://onelake.example/?sv=2024&sig=Sas-Qq71-never")
    for args in (["config", "show"], ["config", "show", "-o", "json"]):
        shown = CliRunner().invoke(app, args, terminal_width=300).output
        assert "Sas-Qq71" not in shown
        assert "https://onelake.example/?***" in shown


def test_an_api_url_with_a_query_is_refused_without_echoing_it(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """The client appends paths to CLAIMX_API_URL, which a query would swallow (every call
    and the health probe sent to the wrong place): refused at start, naming the variable
    and not the key the query holds."""
    clean_env.setenv("CLAIMX_API_URL", "https://claimx.example/api?code=FnKey-Qq71-never-print")
    with pytest.raises(ConfigError, match=r"CLAIMX_API_URL: .*query") as caught:
        load_settings()
    assert "FnKey-Qq71" not in str(caught.value)
