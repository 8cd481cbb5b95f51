"""One settings object for every stage and command.

Read from the runbook's environment variables and an optional ``config.yaml`` with the runbook's
sections; the environment wins over the file, the file over the defaults. The defaults are the
embedded ones: a local Kafka, the ClaimX API simulator and storage under ``CLAIMX_DATA_DIR``, so a
developer's machine needs no configuration at all.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

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
    )

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_consumer_group_prefix: str = "claimx"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    # Azure Event Hubs' Kafka endpoint: the namespace connection string sets all of the above
    eventhubs_connection_string: SecretStr | None = None

    # ClaimX API
    claimx_api_url: str = "http://127.0.0.1:8090/service/cxedirest"
    claimx_api_username: str | None = None
    claimx_api_password: SecretStr | None = None
    claimx_api_token: SecretStr | None = None
    claimx_api_timeout_seconds: float = Field(30.0, gt=0)
    claimx_api_max_retries: int = Field(3, ge=0, le=20)
    claimx_api_concurrency: int = Field(10, ge=1, le=1000)
    claimx_api_rate_limit_per_second: float | None = Field(None, gt=0)
    claimx_api_breaker_failures: int = Field(5, ge=1)
    claimx_api_breaker_open_seconds: float = Field(60.0, gt=0)

    # Topics
    claimx_events_topic: str = "claimx.events.raw"
    claimx_events_dlq_topic: str = "claimx.events.dlq"
    claimx_enrichment_pending_topic: str = "claimx.enrichment.pending"
    claimx_enrichment_dlq_topic: str = Field(
        "claimx.enrichment.dlq",
        validation_alias=AliasChoices("claimx_enrichment_dlq_topic", "claimx_dlq_topic"),
    )
    claimx_downloads_pending_topic: str = "claimx.downloads.pending"
    claimx_downloads_cached_topic: str = "claimx.downloads.cached"
    claimx_downloads_results_topic: str = "claimx.downloads.results"
    claimx_downloads_dlq_topic: str = "claimx.downloads.dlq"
    claimx_dlq_max_message_bytes: int = Field(1_000_000, ge=16 * 1024)
    claimx_topic_partitions: int = Field(6, ge=1, le=1000)
    claimx_topic_replication_factor: int = Field(1, ge=1, le=10)

    # OneLake (unset: files and tables on the local filesystem under CLAIMX_DATA_DIR)
    onelake_workspace_id: str | None = None
    onelake_lakehouse_id: str | None = None
    onelake_endpoint: str = "https://onelake.dfs.fabric.microsoft.com"
    onelake_account_key: SecretStr | None = None

    # Retry tiers
    retry_delays: Annotated[list[int], NoDecode] = [300, 600, 1200, 2400]
    max_retries: int = Field(4, ge=0)
    # A tier keeps messages twice its delay plus this, so a retry stage down this long loses none
    claimx_retry_retention_allowance_seconds: int = Field(86_400, ge=0)

    # Workers
    download_concurrency: int = Field(10, ge=1, le=1000)
    download_batch_size: int = Field(20, ge=1, le=10_000)
    download_allowed_hosts: Annotated[list[str], NoDecode] = ["127.0.0.1", "localhost"]
    download_max_bytes: int = Field(500 * 1024 * 1024, ge=1)
    download_allowed_types: Annotated[list[str], NoDecode] = [
        *("jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic", "heif"),
        *("pdf", "mp4", "mov", "m4v", "avi", "3gp", "webm", "mp3", "m4a", "wav"),
        *("doc", "docx", "xls", "xlsx", "txt", "csv", "esx", "xml", "json", "zip"),
    ]
    download_require_https: bool = False
    download_timeout_seconds: float = Field(60.0, gt=0)
    cache_dir: Path | None = None
    upload_batch_size: int = Field(100, ge=1, le=10_000)
    upload_concurrency: int = Field(10, ge=1, le=1000)
    upload_timeout_seconds: float = Field(60.0, gt=0)
    enrichment_batch_size: int = Field(100, ge=1, le=100_000)
    enable_delta_writes: bool = True

    # Embedded storage root
    claimx_data_dir: Path = Path("claimx-data")

    # Batch runs: each stage ends once its input topics are drained (benchmarks, one-off loads)
    claimx_stop_at_end: bool = False

    # Results
    claimx_results_summary_seconds: int = Field(30, ge=1)
    # A project's counted media are forgotten after this long without a result for it
    claimx_results_project_idle_seconds: int = Field(7 * 86_400, ge=60)

    # Health and metrics server of each stage process (unset port: the stage's runbook port)
    claimx_health_port: int | None = Field(None, ge=0, le=65535)
    claimx_health_host: str = "0.0.0.0"
    claimx_liveness_stale_seconds: float = Field(600.0, gt=0)
    # How often a stage reads the depth of the DLQ it writes (claimx_dlq_depth); 0: never
    claimx_dlq_depth_interval_seconds: float = Field(30.0, ge=0)

    # Recovery (Bytewax snapshots: where each stage's Kafka offsets and state live)
    claimx_recovery_partitions: int = Field(1, ge=1, le=1000)
    claimx_snapshot_interval_seconds: int = Field(5, ge=1)
    claimx_backup_interval_seconds: int = Field(0, ge=0)

    @field_validator(
        "retry_delays", "download_allowed_hosts", "download_allowed_types", mode="before"
    )
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one delay")
        if any(delay <= 0 for delay in value):
            raise ValueError("every delay must be a positive number of seconds")
        if len(set(value)) != len(value):
            raise ValueError("delays must be distinct (each names its own tier topic)")
        return value

    @field_validator("claimx_api_url", "onelake_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

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
        """Every configured secret in clear, for redaction of text that leaves the process."""
        secrets = (
            self.kafka_sasl_password,
            self.eventhubs_connection_string,
            self.claimx_api_password,
            self.claimx_api_token,
            self.onelake_account_key,
        )
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]

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


class _YamlSource(PydanticBaseSettingsSource):
    """``config.yaml`` (or ``CLAIMX_CONFIG_FILE``) in the runbook's sectioned layout."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        if path is None:
            return {}
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"CLAIMX_CONFIG_FILE: cannot read {path}: {exc}") from None
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


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one message naming each variable."""
    try:
        return Settings(**overrides)
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
