"""One settings object for every stage and command.

Read from the runbook's environment variables and an optional ``config.yaml`` with the runbook's
sections; the environment wins over the file, the file over the defaults. The defaults are the
embedded ones: a local Kafka, the ClaimX API simulator and storage under ``CLAIMX_DATA_DIR``, so a
developer's machine needs no configuration at all.
"""

from __future__ import annotations

import base64
import os
import textwrap
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from claimx_flow.errors import ConfigError

# config.yaml section → {key in section: settings field}. The runbook's file layout, flattened
# onto the same fields the environment variables fill.
_YAML_SECTIONS: dict[str, dict[str, str]] = {
    "kafka": {
        "bootstrap_servers": "kafka_bootstrap_servers",
        "consumer_group_prefix": "kafka_consumer_group_prefix",
        "security_protocol": "kafka_security_protocol",
        "sasl_mechanism": "kafka_sasl_mechanism",
        "sasl_username": "kafka_sasl_username",
        "sasl_password": "kafka_sasl_password",
        "ssl_ca_location": "kafka_ssl_ca_location",
        "linger_ms": "kafka_linger_ms",
    },
    "claimx": {
        "api_url": "claimx_api_url",
        "api_username": "claimx_api_username",
        "api_password": "claimx_api_password",
        "api_token": "claimx_api_token",
        "api_timeout_seconds": "claimx_api_timeout_seconds",
        "api_max_retries": "claimx_api_max_retries",
        "api_concurrency": "claimx_api_concurrency",
        "api_rate_limit_per_second": "claimx_api_rate_limit_per_second",
        "api_breaker_failures": "claimx_api_breaker_failures",
        "api_breaker_open_seconds": "claimx_api_breaker_open_seconds",
        "data_dir": "claimx_data_dir",
    },
    "recovery": {
        "partitions": "claimx_recovery_partitions",
        "snapshot_interval_seconds": "claimx_snapshot_interval_seconds",
        "backup_interval_seconds": "claimx_backup_interval_seconds",
    },
    "topics": {
        "events": "claimx_events_topic",
        "events_dlq": "claimx_events_dlq_topic",
        "enrichment_pending": "claimx_enrichment_pending_topic",
        "enrichment_dlq": "claimx_enrichment_dlq_topic",
        "dlq": "claimx_enrichment_dlq_topic",
        "downloads_pending": "claimx_downloads_pending_topic",
        "downloads_cached": "claimx_downloads_cached_topic",
        "downloads_results": "claimx_downloads_results_topic",
        "downloads_dlq": "claimx_downloads_dlq_topic",
        "dlq_max_message_bytes": "claimx_dlq_max_message_bytes",
        "partitions": "claimx_topic_partitions",
        "replication_factor": "claimx_topic_replication_factor",
    },
    "onelake": {
        "workspace_id": "onelake_workspace_id",
        "lakehouse_id": "onelake_lakehouse_id",
        "endpoint": "onelake_endpoint",
        "account_key": "onelake_account_key",
    },
    "retry": {
        "delays": "retry_delays",
        "max_retries": "max_retries",
        "retention_allowance_seconds": "claimx_retry_retention_allowance_seconds",
    },
    "download": {
        "concurrency": "download_concurrency",
        "batch_size": "download_batch_size",
        "cache_dir": "cache_dir",
        "allowed_hosts": "download_allowed_hosts",
        "max_bytes": "download_max_bytes",
        "allowed_types": "download_allowed_types",
        "require_https": "download_require_https",
        "timeout_seconds": "download_timeout_seconds",
    },
    "upload": {
        "batch_size": "upload_batch_size",
        "concurrency": "upload_concurrency",
        "timeout_seconds": "upload_timeout_seconds",
    },
    "enrichment": {
        "batch_size": "enrichment_batch_size",
        "enable_delta_writes": "enable_delta_writes",
    },
}

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Environment = Literal["local", "production"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

ENVIRONMENT_VARIABLE = "CLAIMX_ENV"
STACK_DIR_VARIABLE = "CLAIMX_STACK_DIR"
STACK_STATE_FILE = "state.json"
"""What ``claimx stack up`` records its services in, and ``claimx stack down`` removes."""
MAX_RETRY_DELAY_S = 7 * 24 * 3600
"""The longest delay of a retry tier: a week. A tier's release and retention are times after
a message's timestamp, and a delay no date can be added to stopped the retry stage at that
tier on every start."""


def _comma_list(value: Any) -> Any:
    """Accept the runbook's ``"300,600,1200,2400"`` as well as a YAML list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def env_name(field: str) -> str:
    """The environment variable that sets ``field``: its upper-cased name."""
    return field.upper()


class Settings(BaseSettings):
    """Every knob of the pipeline, named as the runbook names it."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,  # a timeout or rate of inf or nan is a typo, never a setting
    )

    # Where the process runs: production requires what the embedded defaults stand in for
    claimx_env: Environment = Field(
        "local",
        description="`local` (the embedded defaults stand: a local Kafka, the API simulator) "
        "or `production` (KAFKA_BOOTSTRAP_SERVERS, and for what calls the API CLAIMX_API_URL "
        "and its credentials, must be set). Unset: `production` in stage processes and the "
        "`claimx` command, `local` where a local stack is found (CLAIMX_STACK_DIR), for the "
        "lab's commands and for settings built in code",
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka brokers, comma-separated host:port"
    )
    kafka_consumer_group_prefix: str = Field(
        "claimx", description="prefix of the stages' consumer groups (`<prefix>-enricher`, …)"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (the runbook's production "
        "value is SASL_SSL)",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user; required with SASL_*")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password; required with SASL_*"
    )
    kafka_ssl_ca_location: Path | None = Field(None, description="CA bundle for TLS")
    kafka_linger_ms: int = Field(
        50,
        ge=0,
        le=1_000,
        description="how long a stage's producer lets a partition's messages gather before "
        "sending them (librdkafka's linger.ms, default 5; an epoch's confirmation sends at once "
        "whatever it is): larger batches cost the broker and the client less per message, for "
        "at most this much latency per stage",
    )
    # Azure Event Hubs' Kafka endpoint: the namespace connection string sets all of the above
    eventhubs_connection_string: SecretStr | None = Field(
        None,
        description="an Event Hubs namespace's connection string; sets the KAFKA_* settings "
        "(<namespace>:9093, SASL_SSL/PLAIN); explicit KAFKA_* variables still win",
    )

    # ClaimX API
    claimx_api_url: str = Field(
        "http://127.0.0.1:8090/service/cxedirest",
        description="ClaimX API base URL (the default is the local simulator)",
    )
    claimx_api_username: str | None = Field(None, description="ClaimX API Basic auth user")
    claimx_api_password: SecretStr | None = Field(
        None, description="ClaimX API Basic auth password"
    )
    claimx_api_token: SecretStr | None = Field(
        None, description="a ready Basic token instead of user and password"
    )
    claimx_api_timeout_seconds: float = Field(30.0, gt=0, description="per-call timeout")
    claimx_api_max_retries: int = Field(3, ge=0, le=20, description="retries inside one call")
    claimx_api_concurrency: int = Field(10, ge=1, le=1000, description="API calls in flight")
    claimx_api_rate_limit_per_second: float | None = Field(
        None, gt=0, description="token-bucket limit on API calls per process (unset: off)"
    )
    claimx_api_breaker_failures: int = Field(
        5, ge=1, description="consecutive transient failures that open the circuit"
    )
    claimx_api_breaker_open_seconds: float = Field(
        60.0, gt=0, description="how long the circuit stays open before trial calls"
    )

    # Topics
    claimx_events_topic: str = Field(
        "claimx.events.raw", description="raw events (a backfill topic during backfills)"
    )
    claimx_events_dlq_topic: str = Field("claimx.events.dlq", description="unparseable raw events")
    claimx_enrichment_pending_topic: str = Field(
        "claimx.enrichment.pending", description="enrichment tasks"
    )
    claimx_enrichment_dlq_topic: str = Field(
        "claimx.enrichment.dlq",
        validation_alias=AliasChoices("claimx_enrichment_dlq_topic", "claimx_dlq_topic"),
        description="failed enrichments (alias CLAIMX_DLQ_TOPIC)",
    )
    claimx_downloads_pending_topic: str = Field(
        "claimx.downloads.pending", description="download tasks"
    )
    claimx_downloads_cached_topic: str = Field(
        "claimx.downloads.cached", description="downloaded, not yet uploaded"
    )
    claimx_downloads_results_topic: str = Field(
        "claimx.downloads.results", description="upload results"
    )
    claimx_downloads_dlq_topic: str = Field("claimx.downloads.dlq", description="failed downloads")
    claimx_dlq_max_message_bytes: int = Field(
        1_000_000,
        ge=16 * 1024,
        description="largest DLQ or retry-tier copy a stage writes; a larger one is stored "
        "truncated (keep it below the DLQ topics' max.message.bytes)",
    )
    claimx_topic_partitions: int = Field(
        6, ge=1, le=1000, description="partitions for `claimx topics create`"
    )
    claimx_topic_replication_factor: int = Field(
        1,
        ge=1,
        le=10,
        description="replication for `claimx topics create`, and the least `claimx check` "
        "accepts (the Kubernetes ConfigMap sets the runbook's 3)",
    )

    # OneLake (unset: files and tables on the local filesystem under CLAIMX_DATA_DIR)
    onelake_workspace_id: str | None = Field(
        None, description="OneLake workspace id; set both ids to store in OneLake"
    )
    onelake_lakehouse_id: str | None = Field(None, description="OneLake lakehouse id")
    onelake_endpoint: str = Field(
        "https://onelake.dfs.fabric.microsoft.com", description="OneLake DFS endpoint"
    )
    onelake_account_key: SecretStr | None = Field(
        None, description="storage key (emulators); otherwise DefaultAzureCredential"
    )

    # Retry tiers
    retry_delays: Annotated[list[int], NoDecode] = Field(
        [300, 600, 1200, 2400], description="one delay per retry tier, seconds"
    )
    max_retries: int = Field(
        4, ge=0, description="tiers to pass before the DLQ (at most the number of delays)"
    )
    # A tier keeps messages twice its delay plus this, so a retry stage down this long loses none
    claimx_retry_retention_allowance_seconds: int = Field(
        86_400,
        ge=0,
        description="how long a retry stage may be down without losing retries: each tier "
        "keeps messages twice its delay plus this",
    )

    # Workers
    download_concurrency: int = Field(10, ge=1, le=1000, description="downloads in flight")
    download_batch_size: int = Field(20, ge=1, le=10_000, description="download tasks per batch")
    download_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        ["127.0.0.1", "localhost"],
        description="hosts media may come from: glob patterns matched case-insensitively "
        "(fnmatch: *.example.com matches any name under example.com, not example.com itself) "
        "or IP addresses (production: the ClaimX S3 buckets and claimxperience.com)",
    )
    download_max_bytes: int = Field(
        500 * 1024 * 1024, ge=1, description="largest file accepted (enforced while streaming)"
    )
    download_allowed_types: Annotated[list[str], NoDecode] = Field(
        [
            *("jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic", "heif"),
            *("pdf", "mp4", "mov", "m4v", "avi", "3gp", "webm", "mp3", "m4a", "wav"),
            *("doc", "docx", "xls", "xlsx", "txt", "csv", "esx", "xml", "json", "zip"),
        ],
        description="file types (extensions) accepted",
    )
    download_require_https: bool = Field(
        False,
        description="refuse http:// media URLs, and hosts that are or resolve to addresses "
        "off the public internet (loopback, private, link-local, shared, reserved, multicast); "
        "set true in production",
    )
    download_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="per-download deadline from when the download gets its slot; past it the "
        "download is a transient failure",
    )
    cache_dir: Path | None = Field(
        None, description="download cache (unset: $CLAIMX_DATA_DIR/cache)"
    )
    upload_batch_size: int = Field(
        100, ge=1, le=10_000, description="cached downloads read per partition per batch"
    )
    upload_concurrency: int = Field(10, ge=1, le=1000, description="uploads in flight")
    upload_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="per-upload deadline; past it the upload is a transient failure",
    )
    enrichment_batch_size: int = Field(
        500,
        ge=1,
        le=100_000,
        description="tasks read per partition and enriched together, one API call per project "
        "and kind among them (the runbook's range 50-500; its default of 100 made more calls "
        "and more, smaller batches: 0.043 against 0.035 API calls per event and 35% less "
        "throughput on the file-heavy bench; 2,000, beyond that range, 14-16% more for "
        "25-30 MiB more memory)",
    )
    enable_delta_writes: bool = Field(True, description="write entity rows to Delta")
    claimx_delta_retry_seconds: float = Field(
        30.0,
        ge=1,
        le=120,
        description="how long a stage retries a request its OneLake tables fail (a refused "
        "connection, 5xx, throttled) before the step fails and the restart waits for them",
    )

    # Embedded storage root
    claimx_data_dir: Path = Field(
        Path("claimx-data"),
        description="embedded storage root: tables/<table>, files/, cache/, recovery/<stage>",
    )

    # Batch runs: each stage ends once its input topics are drained (benchmarks, one-off loads)
    claimx_stop_at_end: bool = Field(
        False,
        description="end each stage once its input topics are drained (batch runs, "
        "benchmarks) instead of tailing them",
    )

    # Results
    claimx_results_summary_seconds: int = Field(
        30, ge=1, description="how often the results stage logs its summary line"
    )
    # A project's counted media are forgotten after this long without a result for it
    claimx_results_project_idle_seconds: int = Field(
        7 * 86_400,
        ge=60,
        description="a project's counted media are forgotten after this long without a "
        "result for it",
    )

    # Health and metrics server of each stage process (unset port: the stage's runbook port)
    claimx_health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="where the stage serves /health/live, /health/ready and /metrics (unset: "
        "the stage's port, enrich 8081 … retry 8086); 0 turns the server off",
    )
    claimx_health_host: str = Field("0.0.0.0", description="address the health server binds")
    claimx_liveness_stale_seconds: float = Field(
        600.0,
        gt=0,
        description="liveness fails when a worker has not polled its source for this long",
    )
    # How often a stage reads the depth of the DLQ it writes (claimx_dlq_depth); 0: never
    claimx_dlq_depth_interval_seconds: float = Field(
        30.0,
        ge=0,
        description="how often a stage reads the depth of the DLQ it writes; 0 turns it off",
    )

    # Recovery (Bytewax snapshots: where each stage's Kafka offsets and state live)
    claimx_recovery_partitions: int = Field(
        1, ge=1, le=1000, description="recovery partitions created per stage"
    )
    claimx_snapshot_interval_seconds: int = Field(
        5,
        ge=1,
        description="how often offsets and state are snapshotted (and how much a crash replays)",
    )
    claimx_backup_interval_seconds: int = Field(
        0, ge=0, description="how long older snapshots are kept (match your backup cadence)"
    )

    # Logs (read before the rest, so that a bad setting is reported in the chosen format)
    log_format: LogFormat = Field(
        "text",
        description="`text` (one line for people) or `json` (one JSON object per line: time, "
        "level, logger, message, stage, worker, topic, partition, offset where known)",
    )
    log_level: LogLevel | None = Field(
        None,
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL (unset: INFO in stage processes; "
        "WARNING in the `claimx` command, INFO with -v)",
    )

    @field_validator(
        "retry_delays", "download_allowed_hosts", "download_allowed_types", mode="before"
    )
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "eventhubs_connection_string",
        "claimx_api_username",
        "claimx_api_password",
        "claimx_api_token",
        "onelake_account_key",
        mode="before",
    )
    @classmethod
    def _no_trailing_line_break(cls, value: Any) -> Any:
        """A credential read from a file (``kubectl create secret --from-file``) ends in a
        line break, which no credential holds: it goes. Kept, it was a refused login (a 401
        with no hint) or, in the API token sent as it is, a request that could not be made."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return value
        text = raw.rstrip("\r\n")
        return SecretStr(text) if isinstance(value, SecretStr) else text

    @field_validator("claimx_api_token")
    @classmethod
    def _header_safe_token(cls, value: SecretStr | None) -> SecretStr | None:
        """The token goes into the ``Authorization`` header as it is (passwords are base64'd
        first): a control character there is refused, named but not shown."""
        if value is not None and any(
            ord(c) < 0x20 or ord(c) == 0x7F for c in value.get_secret_value()
        ):
            raise ValueError("holds a control character, which no HTTP header may carry")
        return value

    @field_validator("kafka_ssl_ca_location", "cache_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``CACHE_DIR=`` (a manifest's empty value) means unset, not the working directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("claimx_data_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty (unset it for the default, claimx-data)")
        return value

    @field_validator("claimx_env", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one delay")
        if any(delay <= 0 for delay in value):
            raise ValueError("every delay must be a positive number of seconds")
        if any(delay > MAX_RETRY_DELAY_S for delay in value):
            raise ValueError(f"a delay may be at most {MAX_RETRY_DELAY_S} seconds (a week)")
        if len(set(value)) != len(value):
            raise ValueError("delays must be distinct (each names its own tier topic)")
        return value

    @field_validator("claimx_api_url", "onelake_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            # A URL's user and password would be printed wherever the URL is, and aiohttp
            # refuses them beside an Authorization header: credentials have variables of their own.
            raise ValueError(
                "must not hold a user or password (use CLAIMX_API_USERNAME/PASSWORD or "
                "CLAIMX_API_TOKEN, or ONELAKE_ACCOUNT_KEY)"
            )
        return value.rstrip("/")

    @field_validator("claimx_api_url")
    @classmethod
    def _no_query(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            # Paths are appended to it, so a query would swallow them (and it is printed as
            # the URL's address): a key has CLAIMX_API_TOKEN, CLAIMX_API_PASSWORD.
            raise ValueError("must not hold a query or fragment (give a key as CLAIMX_API_TOKEN)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _event_hubs(cls, values: Any) -> Any:
        """An Event Hubs connection string means SASL_SSL/PLAIN on ``<namespace>:9093``.

        Event Hubs takes the literal user name ``$ConnectionString`` and the whole string as
        the password. Explicit KAFKA_* values still win.
        """
        if not isinstance(values, dict):
            return values
        raw = next(
            (
                values[k]
                for k in ("eventhubs_connection_string", "EVENTHUBS_CONNECTION_STRING")
                if values.get(k)
            ),
            None,
        )
        if raw is None:
            return values
        text = raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)
        host = _event_hubs_host(text)
        defaults = {
            "kafka_bootstrap_servers": f"{host}:9093",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": "$ConnectionString",
            "kafka_sasl_password": text,
        }
        present = {k.lower() for k in values}
        return {**values, **{k: v for k, v in defaults.items() if k not in present}}

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_retries > len(self.retry_delays):
            raise _field_error(
                "max_retries",
                f"is {self.max_retries} but RETRY_DELAYS defines only "
                f"{len(self.retry_delays)} tiers",
            )
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise _field_error(
                "kafka_sasl_username",
                f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required when "
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}",
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # Derived places and names ---------------------------------------------------------------

    def secret_values(self) -> list[str]:
        """Every configured secret in clear, for redaction of text that leaves the process; the
        API's Basic token too (base64 of user:password: the password, one decode away)."""
        secrets = [getattr(self, name) for name in _secret_fields()]
        found = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        password = self.claimx_api_password
        if self.claimx_api_username and password is not None and password.get_secret_value():
            found.append(basic_token(self.claimx_api_username, password.get_secret_value()))
        return found

    @property
    def tables_dir(self) -> Path:
        return self.claimx_data_dir / "tables"

    @property
    def files_dir(self) -> Path:
        return self.claimx_data_dir / "files"

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.claimx_data_dir / "cache"

    def recovery_dir(self, stage: str) -> Path:
        return self.claimx_data_dir / "recovery" / stage

    def consumer_group(self, worker: str) -> str:
        return f"{self.kafka_consumer_group_prefix}-{worker}"

    @cached_property
    def enrichment_retry_topics(self) -> list[str]:
        """The runbook's enrichment tiers: ``….retry.5m`` for 300 s (seconds if not whole)."""
        return [
            f"{self.claimx_enrichment_pending_topic}.retry.{_minutes_or_seconds(d)}"
            for d in self.retry_delays
        ]

    @cached_property
    def download_retry_topics(self) -> list[str]:
        """The runbook's download tiers: ``….retry.300s``."""
        return [f"{self.claimx_downloads_pending_topic}.retry.{d}s" for d in self.retry_delays]


def _event_hubs_host(connection_string: str) -> str:
    """The namespace host of ``Endpoint=sb://<host>/;SharedAccessKeyName=…;SharedAccessKey=…``."""
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            host = value.strip().removeprefix("sb://").rstrip("/")
            if host:
                return host
    raise _field_error(
        "eventhubs_connection_string", "has no Endpoint=sb://<namespace>.servicebus.windows.net/"
    )


def _minutes_or_seconds(delay: int) -> str:
    return f"{delay // 60}m" if delay % 60 == 0 else f"{delay}s"


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where, without PyYAML's quote of the line: the line a typo breaks
    is as likely as any to hold a password."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "not valid YAML"
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


class _YamlSource(PydanticBaseSettingsSource):
    """``config.yaml`` (or ``CLAIMX_CONFIG_FILE``) in the runbook's sectioned layout."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if path is None:
            return {}
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"CLAIMX_CONFIG_FILE: cannot read {path}: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"CLAIMX_CONFIG_FILE: cannot read {path}: not UTF-8 text (save it as UTF-8)"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"CLAIMX_CONFIG_FILE: cannot read {path}: {_yaml_problem(exc)}"
            ) from None
        if not isinstance(document, dict):
            raise ConfigError(f"CLAIMX_CONFIG_FILE: {path} must hold a mapping of sections")
        values: dict[str, Any] = {}
        for section, body in document.items():
            keys = _YAML_SECTIONS.get(section)
            if keys is None:
                raise ConfigError(
                    f"CLAIMX_CONFIG_FILE: unknown section '{section}' in {path} "
                    f"(known: {', '.join(_YAML_SECTIONS)})"
                )
            if not isinstance(body, dict):
                raise ConfigError(f"CLAIMX_CONFIG_FILE: section '{section}' must be a mapping")
            for key, value in body.items():
                if key not in keys:
                    raise ConfigError(
                        f"CLAIMX_CONFIG_FILE: unknown key '{section}.{key}' in {path}"
                    )
                values[keys[key]] = value
        return values


def config_file_path() -> Path | None:
    """``CLAIMX_CONFIG_FILE`` if set (it must exist), else ``./config.yaml`` if present."""
    explicit = os.environ.get("CLAIMX_CONFIG_FILE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"CLAIMX_CONFIG_FILE: no such file {path}")
        return path
    default = Path("config.yaml")
    return default if default.is_file() else None


def stack_directory() -> Path:
    """Where a local stack keeps its state (``CLAIMX_STACK_DIR``, default ``./.claimx-stack``)."""
    return Path(os.environ.get(STACK_DIR_VARIABLE, ".claimx-stack"))


def local_stack_found() -> bool:
    """Whether a local stack (``claimx stack up``) keeps its state here (``stack_directory``):
    only a developer's machine has one.

    The state file, not the folder: ``claimx stack down`` leaves the folder, and a folder left
    in a directory must not turn an operator's command there to the embedded defaults."""
    return (stack_directory() / STACK_STATE_FILE).is_file()


def adopt_default_environment(*, local: bool = False) -> None:
    """For entry points only (a stage process, the ``claimx`` command): when ``CLAIMX_ENV`` is
    unset, set it for this process and what it starts: ``local`` when ``local`` is asked (the
    lab's commands) or a local stack is found, else ``production``.

    Settings built in code, and ``load_settings()`` in a process that adopted nothing (tests),
    stay ``local``: the field's default.
    """
    if not os.environ.get(ENVIRONMENT_VARIABLE):
        environment = "local" if local or local_stack_found() else "production"
        os.environ[ENVIRONMENT_VARIABLE] = environment


REQUIRED_IN_PRODUCTION = ("kafka_bootstrap_servers",)
REQUIRED_FOR_API = ("claimx_api_url",)
API_CREDENTIALS = "CLAIMX_API_USERNAME and CLAIMX_API_PASSWORD (or CLAIMX_API_TOKEN)"


def missing_required(settings: Settings, *, api: bool, kafka: bool = True) -> list[str]:
    """The required variables not given (environment, ``config.yaml`` or code): the runbook's
    ``KAFKA_BOOTSTRAP_SERVERS`` (unless ``kafka`` is off: a command that never talks to Kafka),
    and with ``api`` ``CLAIMX_API_URL`` and its credentials.
    A default does not count: in production it would point at a local broker or the simulator.
    """

    def given(field: str) -> bool:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return field in settings.model_fields_set and value not in (None, "")

    fields = (REQUIRED_IN_PRODUCTION if kafka else ()) + (REQUIRED_FOR_API if api else ())
    missing = [env_name(field) for field in fields if not given(field)]
    credentials = given("claimx_api_token") or (
        given("claimx_api_username") and given("claimx_api_password")
    )
    if api and not credentials:
        missing.append(API_CREDENTIALS)
    return missing


def _ca_bundle_found(location: Path) -> bool:
    """``probe`` is librdkafka's own value: the system's usual places."""
    return str(location) == "probe" or location.exists()


def load_settings(
    *, require_api: bool = False, require_kafka: bool = True, **overrides: Any
) -> Settings:
    """Build the settings, turning validation errors into one message naming each variable.

    With ``CLAIMX_ENV=production`` the variables the embedded defaults stand in for must be
    given (:func:`missing_required`): the broker unless ``require_kafka`` is off (a command
    that never talks to Kafka), and with ``require_api`` the ClaimX API's, for what calls it.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            ctx_error = (error.get("ctx") or {}).get("error")
            if isinstance(ctx_error, _FieldError):
                field = ctx_error.field
            message = str(ctx_error) if ctx_error is not None else error["msg"]
            name = env_name(field) if field else "configuration"
            problems.append(f"{name}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    ca_bundle = settings.kafka_ssl_ca_location
    if require_kafka and ca_bundle is not None and not _ca_bundle_found(ca_bundle):
        # Named here, where librdkafka would say only "BIO lib"; only for what talks to Kafka,
        # since an operator's machine may run the other commands without the pod's file.
        raise ConfigError(f"invalid configuration: KAFKA_SSL_CA_LOCATION: no file at {ca_bundle}")
    if settings.claimx_env == "production":
        missing = missing_required(settings, api=require_api, kafka=require_kafka)
        if missing:
            raise ConfigError(
                f"required but not set: {'; '.join(missing)} (CLAIMX_ENV=production; "
                "CLAIMX_ENV=local runs on the local defaults)"
            )
    return settings


def secret_variables() -> list[str]:
    """The variables that hold secrets (``SecretStr`` fields)."""
    return [env_name(name) for name in _secret_fields()]


def _secret_fields() -> list[str]:
    return [
        name
        for name, info in Settings.model_fields.items()
        if info.annotation is SecretStr or SecretStr in get_args(info.annotation)
    ]


def configured_secrets() -> list[str]:
    """Every secret the environment and the config file give, in clear: for masking what a
    command prints before its settings are built, or when they cannot be. Read as the settings
    read them: a variable's name in any case, a value without its trailing line break; the
    API's Basic token too. A config file that cannot be read gives none (its error names no
    value)."""
    fields = _secret_fields()
    environment = {name.lower(): value for name, value in os.environ.items()}

    def given(variable: str) -> str:
        return environment.get(variable.lower(), "").rstrip("\r\n")

    found = [value for name in fields if (value := given(env_name(name)))]
    user, password = given("CLAIMX_API_USERNAME"), given("CLAIMX_API_PASSWORD")
    if user and password:
        found.append(basic_token(user, password))
    try:
        from_file = _YamlSource(Settings)()
    except ConfigError:
        return found
    return found + [str(from_file[name]) for name in fields if from_file.get(name)]


def basic_token(user: str, password: str) -> str:
    """What HTTP Basic sends for ``user`` and ``password``."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# .env.example ------------------------------------------------------------------------------

_EXAMPLE_HEADER = """\
# claimx-flow: every setting as an environment variable, with its default and meaning.
# Generated from claimx_flow.config.Settings (`claimx config example > .env.example`); a test
# keeps it current, so do not edit it by hand.
#
# Copy it to .env, uncomment and set what differs from the default, then load it
# (`set -a; . ./.env; set +a`). The environment wins over config.yaml, config.yaml over the
# defaults. Secrets have no value here: give them from your secret store.
#
# With CLAIMX_ENV=production (the default of stage processes and of `claimx` away from a local
# stack) these must be set, or the process stops naming them: KAFKA_BOOTSTRAP_SERVERS, and for
# what calls the ClaimX API (the enrich and download stages, `claimx check`, `claimx api check`):
# CLAIMX_API_URL with CLAIMX_API_USERNAME and CLAIMX_API_PASSWORD (or CLAIMX_API_TOKEN).
"""

_EXAMPLE_EXTRA = (
    (
        "CLAIMX_CONFIG_FILE",
        "",
        "the YAML file to read (unset: ./config.yaml if present)",
    ),
    (
        STACK_DIR_VARIABLE,
        "",
        "where a local stack keeps its state and env file (unset: ./.claimx-stack); while it "
        "holds a stack's state (claimx stack up), CLAIMX_ENV defaults to local",
    ),
)


def _example_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def env_example() -> str:
    """The text of ``.env.example``: every variable, commented out at its default, after its
    meaning, its ``config.yaml`` key, and whether it is a secret or required in production."""
    yaml_keys = {
        field: f"{section}.{key}"
        for section, keys in _YAML_SECTIONS.items()
        for key, field in keys.items()
        if not (section == "topics" and key == "dlq")  # the old name of topics.enrichment_dlq
    }
    secrets = set(secret_variables())
    lines = [_EXAMPLE_HEADER]
    for name, info in Settings.model_fields.items():
        variable = env_name(name)
        notes = [info.description or ""]
        if name in yaml_keys:
            notes.append(f"config.yaml: {yaml_keys[name]}.")
        if name in REQUIRED_IN_PRODUCTION:
            notes.append("Required in production.")
        elif name in REQUIRED_FOR_API:
            notes.append("Required in production by what calls the API.")
        elif name in ("claimx_api_username", "claimx_api_password"):
            notes.append("Required in production by what calls the API, unless CLAIMX_API_TOKEN.")
        if variable in secrets:
            notes.append("Secret: no value here.")
        value = "" if variable in secrets else _example_value(info.default)
        lines.append(_example_entry(variable, value, notes))
    for variable, value, meaning in _EXAMPLE_EXTRA:
        lines.append(_example_entry(variable, value, [meaning]))
    return "\n".join(lines)


def _example_entry(variable: str, value: str, notes: list[str]) -> str:
    first, *rest = notes
    text = (first[:1].upper() + first[1:] + "." if first else "") + "".join(f" {n}" for n in rest)
    comment = textwrap.fill(text.strip(), width=98, initial_indent="# ", subsequent_indent="# ")
    return f"{comment}\n# {variable}={value}\n"
