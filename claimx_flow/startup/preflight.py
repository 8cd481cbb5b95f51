"""The runbook's "verify configuration" step: can this stage run with these settings?

``claimx check`` prints every check; each dataflow runs the same checks when it starts and
stops at once with a clear message when one fails, rather than failing later mid-stream. A
ClaimX API that cannot be reached, or answers that it is unavailable for now (429, 5xx), is
reported but does not stop a stage (its failures go to the retry tiers and readiness shows it):
a stage that exits would only be started again into the same outage. Credentials the API
refuses do stop it.

A retry tier that keeps messages for less than its delay stops every stage that writes or reads
it: Kafka would delete messages before they are due. A tier below the retention that
``claimx topics create`` sets (twice the delay + the allowance) is reported, and so are tier
topics that the configuration no longer names but that still hold messages; neither stops a
stage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import ClusterMetadata

from claimx_flow import catalog
from claimx_flow.catalog import STAGE_NAMES, StageSpec
from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError, ErrorCategory, KafkaAdminTimeout
from claimx_flow.kafka.clients import REFUSED, failure_reason
from claimx_flow.kafka.topics import (
    Retention,
    admin_client,
    fewest_replicas,
    tier_retention_ms,
    topic_retention,
)
from claimx_flow.models.redaction import mask_url_queries, one_line
from claimx_flow.routing.tiers import Tier, all_tiers, orphan_tiers
from claimx_flow.startup.recovery import recovery_directory
from claimx_flow.startup.recovery_state import check_recovery_identity


class PreflightError(ClaimxError):
    """A stage cannot start; the message lists every failed check."""

    def __init__(self, message: str, outage: bool = False) -> None:
        super().__init__(message)
        self.outage = outage
        """Every failed check is a peer that is down: starting later may succeed."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    blocking: bool = True
    unreachable: bool = False
    """The peer is down: it did not answer at all, or answered that it is unavailable for now
    (an outage, not a misconfiguration; ``claimx check`` exits 2 for it)."""


def run_checks(
    settings: Settings, stages: Sequence[str] = STAGE_NAMES, *, recovery_in_use: bool = True
) -> list[Check]:
    """Every check of ``stages``; ``recovery_in_use=False``: a stage process that runs without a
    recovery directory (the bare command without ``BYTEWAX_RECOVERY_DIRECTORY``)."""
    specs = [catalog.stage(name) for name in stages]
    kafka, metadata = _kafka(settings, specs)
    checks = [kafka]
    kafka_ok = kafka.ok
    if unsent := _credentials_unsent(settings):
        checks.append(unsent)
    if metadata is not None:
        checks.append(_replication(settings, specs, metadata))
    tiers = _stage_tiers(settings, specs)
    if tiers and kafka_ok:
        checks.append(_tier_retention(settings, tiers))
    if kafka_ok and any(spec.releases for spec in specs):
        checks.append(_orphans(settings))
    if any(spec.calls_api for spec in specs):
        checks.append(_api(settings))
    tables = sorted({table for spec in specs for table in spec.tables})
    if tables and settings.enable_delta_writes:
        if settings.onelake_workspace_id is None:
            checks.append(_writable("Delta tables", settings.tables_dir))
        else:
            checks.append(_table_storage(settings, tables[0]))
    if any(spec.uses_cache for spec in specs):
        checks.append(_writable("download cache", settings.effective_cache_dir))
    if any(spec.stores_files for spec in specs):
        checks.append(_file_store(settings))
    checks.extend(_recovery(settings, stage, kafka_ok, recovery_in_use) for stage in stages)
    return checks


def require_ready(settings: Settings, stage: str, *, recovery_in_use: bool = True) -> list[Check]:
    """Run the stage's checks and raise with every blocking failure; returns them all."""
    checks = run_checks(settings, (stage,), recovery_in_use=recovery_in_use)
    failed = [c for c in checks if not c.ok and c.blocking]
    if failed:
        raise PreflightError(
            f"{stage} cannot start: " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            outage=all(c.unreachable for c in failed),
        )
    return checks


def _topic_names(settings: Settings, specs: Sequence[StageSpec]) -> list[str]:
    """Every topic the stages read or write."""
    return sorted({t for spec in specs for t in catalog.stage_topics(settings, spec)})


def _kafka(settings: Settings, specs: Sequence[StageSpec]) -> tuple[Check, ClusterMetadata | None]:
    """The broker answers and the stages' topics exist; the metadata when it answered."""
    wanted = _topic_names(settings, specs)
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        reason = failure_reason(admin, exc) + _unsent_hint(settings)
        if reason.startswith(REFUSED):  # a finding, not an outage: waiting would not mend it
            return Check("Kafka", False, f"{settings.kafka_bootstrap_servers}: {reason}"), None
        detail = f"{settings.kafka_bootstrap_servers} unreachable: {reason}"
        return Check("Kafka", False, detail, unreachable=True), None
    missing = [t for t in wanted if t not in metadata.topics]
    if missing:
        detail = f"topics missing: {', '.join(missing)} (run `claimx topics create`)"
        return Check("Kafka", False, detail), metadata
    exist = f"{settings.kafka_bootstrap_servers}: {len(wanted)} topics exist"
    return Check("Kafka", True, exist), metadata


def _credentials_unsent(settings: Settings) -> Check | None:
    """SASL credentials that the security protocol does not send: a laptop set up with the
    user and password but not ``KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT by default) is refused or
    cut off by a SASL listener, with nothing in the broker's answer that says why."""
    if not _unsent_hint(settings):
        return None
    detail = (
        f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
        f"{settings.kafka_security_protocol} sends no credentials (the runbook's production "
        "value is SASL_SSL)"
    )
    return Check("Kafka credentials", False, detail, blocking=False)


def _unsent_hint(settings: Settings) -> str:
    given = settings.kafka_sasl_username or settings.kafka_sasl_password
    if not given or settings.kafka_security_protocol.startswith("SASL_"):
        return ""
    return (
        f" (KAFKA_SASL_* are set, but KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol})"
    )


def _replication(
    settings: Settings, specs: Sequence[StageSpec], metadata: ClusterMetadata
) -> Check:
    """Each topic the stages use has the replicas ``claimx topics create`` gives (the runbook's
    production topics have 3): with fewer, fewer lost brokers lose its messages."""
    wanted = settings.claimx_topic_replication_factor
    fewer = []
    for name in _topic_names(settings, specs):
        topic = metadata.topics.get(name)
        if topic is None or not topic.partitions:
            continue  # a missing topic is the Kafka check's to report
        replicas = fewest_replicas(topic)
        if replicas < wanted:
            fewer.append(f"{name} ({replicas})")
    name = "Kafka replication"
    if fewer:
        detail = (
            f"{len(fewer)} topic(s) have fewer replicas than CLAIMX_TOPIC_REPLICATION_FACTOR="
            f"{wanted}: {', '.join(fewer)}; fewer lost brokers lose their messages (raise it "
            "with kafka-reassign-partitions)"
        )
        return Check(name, False, detail, blocking=False)
    return Check(name, True, f"every topic has at least {wanted} replica(s)")


def _stage_tiers(settings: Settings, specs: Sequence[StageSpec]) -> list[Tier]:
    """The tiers the stages write their failures to or read and release."""
    ladders = {spec.ladder for spec in specs if spec.ladder}
    ladders |= {ladder for spec in specs for ladder in spec.releases}
    topics = {topic for ladder in ladders for topic in catalog.ladder_topics(settings, ladder)}
    return [tier for tier in all_tiers(settings) if tier.topic in topics]


def _tier_retention(settings: Settings, tiers: Sequence[Tier]) -> Check:
    name = "retry retention"
    try:
        kept = topic_retention(admin_client(settings), [tier.topic for tier in tiers])
    except KafkaAdminTimeout as exc:
        return Check(name, False, str(exc), unreachable=True)
    except ClaimxError as exc:
        return Check(name, False, str(exc))
    losing: list[str] = []
    short: list[str] = []
    for tier in tiers:
        retention = kept.get(tier.topic)
        if retention is None:  # a missing topic is the Kafka check's to report
            continue
        if not retention.keeps(tier.delay_s):
            losing.append(_loss(tier, retention))
        elif 0 <= retention.ms < tier_retention_ms(settings, tier.delay_s):
            short.append(f"{tier.topic} ({_seconds(retention.ms)})")
    allowance = settings.claimx_retry_retention_allowance_seconds
    if losing:
        return Check(name, False, "; ".join(losing))
    if short:
        detail = (
            f"below twice the delay + {allowance}s: {', '.join(short)}; a retry stage down "
            "that long would lose messages (run `claimx topics create` to raise it)"
        )
        return Check(name, False, detail, blocking=False)
    return Check(name, True, f"{len(tiers)} tiers keep twice their delay + {allowance}s or more")


def _loss(tier: Tier, retention: Retention) -> str:
    """Why Kafka would delete a tier's messages before they are due, and the fix."""
    if retention.compacts:
        return (
            f"{tier.topic} has cleanup.policy={retention.policy}: compaction drops all but "
            "the last message of each key (set cleanup.policy=delete)"
        )
    return (
        f"{tier.topic} keeps messages {_seconds(retention.ms)}, less than its {tier.delay_s}s "
        "delay (run `claimx topics create` to raise it)"
    )


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _orphans(settings: Settings) -> Check:
    name = "orphan retry tiers"
    try:
        orphans = orphan_tiers(settings)
    except ClaimxError as exc:
        return Check(name, False, str(exc), blocking=False)
    if not orphans:
        return Check(name, True, "no tier topic outside the configuration holds messages")
    held = ", ".join(
        f"{o.tier.topic} ({o.messages:,} held, {o.tier.delay_s}s delay → {o.tier.pending_topic})"
        for o in orphans
    )
    detail = (
        f"not configured but holding messages: {held}; the retry stage drains them when it "
        "starts (restart it), then delete each topic"
    )
    return Check(name, False, detail, blocking=False)


def _api(settings: Settings) -> Check:
    async def probe() -> tuple[bool, str | None, str]:
        from claimx_flow.api import ClaimXApiClient  # see _file_store

        async with ClaimXApiClient(settings) as client:
            result = await client.check()
            return result.ok, result.problem, result.detail

    try:
        ok, problem, detail = asyncio.run(probe())
    except ClaimxError as exc:
        return Check("ClaimX API", False, str(exc))
    if ok:
        where = mask_url_queries(settings.claimx_api_url)
        return Check("ClaimX API", True, f"{where}: credentials accepted")
    # An outage, not a misconfiguration: report it, don't refuse to start. Nor for an unproven
    # answer: the probe project may just not exist there, and the stage's own calls will tell.
    outage = problem in ("unreachable", "unavailable")
    unproven = problem == "unproven"
    return Check("ClaimX API", False, detail, blocking=not (outage or unproven), unreachable=outage)


def _writable(name: str, directory: Path) -> Check:
    return _attempt(name, lambda: _probe_dir(directory), f"{directory} is writable")


def _table_storage(settings: Settings, table: str) -> Check:
    """Tables in OneLake take a write, probed through delta-rs as every commit writes (one
    table: they share the lakehouse and the credential)."""
    from claimx_flow.delta.reach import storage_fault
    from claimx_flow.storage.locations import table_location

    name = "Delta tables"
    try:
        uri, options = table_location(settings, table)
    except ClaimxError as exc:
        return Check(name, False, str(exc))
    fault = storage_fault(uri, options, tuple(settings.secret_values()))
    if fault is not None:
        # Down (no answer, 5xx) is an outage, as for the file storage; "no" is a finding.
        return Check(name, False, fault.detail, unreachable=not fault.refused)
    return Check(name, True, f"{uri.rsplit('/', 1)[0]} takes writes")


def _file_store(settings: Settings) -> Check:
    # Imported by the checks that use them: a stage without file storage or API calls (retry,
    # ingest) then never loads the Azure SDK, which is most of its resident memory at start.
    from claimx_flow.storage.locations import file_store

    async def probe() -> None:
        store = file_store(settings)
        try:
            await store.check_writable()
        finally:
            await store.close()

    try:
        asyncio.run(probe())
    except (OSError, ClaimxError) as exc:
        # OneLake that gave no answer, or said it is unavailable, is an outage (exit 2 from
        # ``claimx check``), as for Kafka and the API; a refusal or a bad path is a finding.
        outage = getattr(exc, "category", None) is ErrorCategory.TRANSIENT
        return Check("file storage", False, one_line(str(exc)), unreachable=outage)
    return Check("file storage", True, "storage accepts writes")


def _recovery(settings: Settings, stage: str, kafka_ok: bool, in_use: bool = True) -> Check:
    """The recovery directory is writable, and its offsets belong to this cluster and to the
    input topics as they are now (ids recorded on the first start, no offset beyond a
    partition's end, the consumer group's included). Without one in use, the group's only."""
    directory = recovery_directory(settings, stage)
    name = f"recovery ({stage})"
    if not in_use:
        try:
            if kafka_ok:
                check_recovery_identity(settings, stage, in_use=False)
        except (ClaimxError, KafkaException) as exc:
            return Check(name, False, str(exc))
        return Check(name, True, "none: resumes from its consumer group's offsets")
    try:
        _probe_dir(directory)
        if kafka_ok:
            check_recovery_identity(settings, stage)
    except ClaimxError as exc:
        return Check(name, False, str(exc))
    except (OSError, KafkaException) as exc:
        return Check(name, False, f"{directory}: {exc}")
    if not kafka_ok:
        return Check(
            name, True, f"{directory} is writable (its cluster and topics not checked: no Kafka)"
        )
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
