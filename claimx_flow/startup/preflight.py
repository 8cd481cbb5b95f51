"""The runbook's "verify configuration" step: can this stage run with these settings?

``claimx check`` prints every check; each dataflow runs the same checks when it starts and
stops at once with a clear message when one fails, rather than failing later mid-stream. A
ClaimX API that cannot be reached is reported but does not stop a stage (its failures go to the
retry tiers and readiness shows it); credentials the API refuses do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException

from claimx_flow import catalog
from claimx_flow.api import ClaimXApiClient
from claimx_flow.catalog import STAGE_NAMES, StageSpec
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError
from claimx_flow.kafka.clients import failure_reason
from claimx_flow.kafka.topics import admin_client
from claimx_flow.startup.recovery import RecoveryMismatch, check_recovery_cluster, kafka_cluster_id
from claimx_flow.storage.locations import file_store


class PreflightError(ClaimxError):
    """A stage cannot start; the message lists every failed check."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    blocking: bool = True


def run_checks(settings: Settings, stages: Sequence[str] = STAGE_NAMES) -> list[Check]:
    specs = [catalog.stage(name) for name in stages]
    checks = [_kafka(settings, specs)]
    if any(spec.calls_api for spec in specs):
        checks.append(_api(settings))
    local_tables = settings.onelake_workspace_id is None
    if any(spec.tables for spec in specs) and settings.enable_delta_writes and local_tables:
        checks.append(_writable("Delta tables", settings.tables_dir))
    if any(spec.uses_cache for spec in specs):
        checks.append(_writable("download cache", settings.effective_cache_dir))
    if any(spec.stores_files for spec in specs):
        checks.append(_file_store(settings))
    checks.extend(_recovery(settings, stage, checks[0].ok) for stage in stages)
    return checks


def require_ready(settings: Settings, stage: str) -> list[Check]:
    """Run the stage's checks and raise with every blocking failure; returns them all."""
    checks = run_checks(settings, (stage,))
    failed = [c for c in checks if not c.ok and c.blocking]
    if failed:
        raise PreflightError(
            f"{stage} cannot start: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        )
    return checks


def _kafka(settings: Settings, specs: Sequence[StageSpec]) -> Check:
    wanted = sorted({t for spec in specs for t in catalog.stage_topics(settings, spec)})
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        detail = f"{settings.kafka_bootstrap_servers} unreachable: {failure_reason(admin, exc)}"
        return Check("Kafka", False, detail)
    missing = [t for t in wanted if t not in metadata.topics]
    if missing:
        detail = f"topics missing: {', '.join(missing)} (run `claimx topics create`)"
        return Check("Kafka", False, detail)
    return Check("Kafka", True, f"{settings.kafka_bootstrap_servers}: {len(wanted)} topics exist")


def _api(settings: Settings) -> Check:
    async def probe() -> tuple[bool, str | None, str]:
        async with ClaimXApiClient(settings) as client:
            result = await client.check()
            return result.ok, result.problem, result.detail

    try:
        ok, problem, detail = asyncio.run(probe())
    except ClaimxError as exc:
        return Check("ClaimX API", False, str(exc))
    if ok:
        return Check("ClaimX API", True, f"{settings.claimx_api_url}: credentials accepted")
    # Unreachable is an outage, not a misconfiguration: report it, don't refuse to start.
    return Check("ClaimX API", False, detail, blocking=problem != "unreachable")


def _writable(name: str, directory: Path) -> Check:
    return _attempt(name, lambda: _probe_dir(directory), f"{directory} is writable")


def _file_store(settings: Settings) -> Check:
    async def probe() -> None:
        store = file_store(settings)
        try:
            await store.check_writable()
        finally:
            await store.close()

    return _attempt("file storage", lambda: asyncio.run(probe()), "storage accepts writes")


def _recovery(settings: Settings, stage: str, kafka_ok: bool) -> Check:
    directory = settings.recovery_dir(stage)
    name = f"recovery ({stage})"
    try:
        _probe_dir(directory)
        if kafka_ok:
            check_recovery_cluster(settings, stage, kafka_cluster_id(settings))
    except RecoveryMismatch as exc:
        return Check(name, False, str(exc))
    except (OSError, KafkaException) as exc:
        return Check(name, False, f"{directory}: {exc}")
    return Check(name, True, f"{directory} is usable")


def _probe_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    probe.unlink()


def _attempt(name: str, action: Callable[[], object], success: str) -> Check:
    try:
        action()
    except (OSError, ClaimxError) as exc:
        return Check(name, False, str(exc))
    return Check(name, True, success)
