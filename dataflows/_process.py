"""What every stage process does before its dataflow runs, and the lazily built ``flow``.

``python -m bytewax.run dataflows.<stage>`` looks up the module's ``flow``. Each stage module
builds it on that first look-up (``__getattr__``), after the process set-up here: logging,
graceful SIGTERM, the stage's metric label, the preflight checks and the health server. Tests
call the module's ``build(settings)`` instead and get the dataflow with none of that.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping

from bytewax.dataflow import Dataflow

from claimx_flow import catalog
from claimx_flow.config import Settings, adopt_default_environment, load_settings
from claimx_flow.errors import ConfigError
from claimx_flow.runtime import health, logs, metrics
from claimx_flow.runtime.health import serve
from claimx_flow.startup.preflight import Check, PreflightError, require_ready
from claimx_flow.startup.recovery import RECOVERY_DIRECTORY_ENV, process_recovery_directory
from operators import shutdown

log = logging.getLogger(__name__)


_built: dict[str, Dataflow] = {}


def flow_attribute(
    name: str,
    stage: str,
    build: Callable[[Settings], Dataflow],
    after_build: Callable[[], None] | None = None,
) -> Dataflow:
    """A stage module's ``__getattr__``: ``flow`` is set up and built once, on first use."""
    if name != "flow":
        raise AttributeError(f"module dataflows.{stage} has no attribute {name!r}")
    if stage not in _built:
        settings = process_settings(stage)
        setup_process(stage, settings)
        _built[stage] = build(settings)
        if after_build is not None:
            after_build()
    return _built[stage]


def process_settings(stage: str) -> Settings:
    """The stage process's settings, or exit 2 with one log line naming what is wrong.

    ``CLAIMX_ENV`` defaults to ``production`` here (``local`` where a local stack is found; the
    lab's runner passes ``local``), so a pod missing ``KAFKA_BOOTSTRAP_SERVERS`` (or, for a stage
    that calls the API, ``CLAIMX_API_*``) stops instead of talking to the embedded defaults.
    Logging is set up from the raw ``LOG_FORMAT``/``LOG_LEVEL`` first, so that line is already
    in the chosen format.
    """
    adopt_default_environment()
    logs.configure(
        logs.parse_format(os.environ.get("LOG_FORMAT")),
        logs.parse_level(os.environ.get("LOG_LEVEL")),
        context=process_context(stage),
    )
    try:
        return load_settings(require_api=catalog.stage(stage).calls_api)
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


def process_context(
    stage: str, argv: list[str] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, object]:
    """What every log line of this process carries: the stage and, with one worker per process
    (the deployments' shape), the worker's index, which is then the Bytewax process index.

    Read as ``bytewax.run`` reads them: ``-i``/``-w`` or ``BYTEWAX_PROCESS_ID`` /
    ``BYTEWAX_WORKERS_PER_PROCESS``, or the StatefulSet pod's ordinal. With several workers per
    process a line names its worker only when the code passes ``extra={"worker": index}``.
    """
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-i", "--process-id", type=int)
    parser.add_argument("-w", "--workers-per-process", type=int)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    process = known.process_id
    if process is None:
        process = _int(env.get("BYTEWAX_PROCESS_ID"))
    if process is None and "BYTEWAX_POD_NAME" in env and "BYTEWAX_STATEFULSET_NAME" in env:
        ordinal = env["BYTEWAX_POD_NAME"].removeprefix(env["BYTEWAX_STATEFULSET_NAME"] + "-")
        process = _int(ordinal)
    process = process or 0
    workers = known.workers_per_process or _int(env.get("BYTEWAX_WORKERS_PER_PROCESS")) or 1
    return {"stage": stage, "worker": process if workers == 1 else None}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def setup_process(stage: str, settings: Settings, level: int | None = None) -> None:
    """What every stage process does first: log to stderr (``LOG_FORMAT``, ``LOG_LEVEL``,
    secrets redacted), stop gracefully on SIGTERM, name its stage on every metric, check it
    can run (or exit 2 saying why), serve health probes and metrics on the stage's port, and
    export the depth of the DLQ it writes."""
    logs.configure(
        settings.log_format,
        level if level is not None else logs.parse_level(settings.log_level),
        secrets=settings.secret_values(),
        context=process_context(stage),
    )
    log.info(
        "%s starting (CLAIMX_ENV=%s, Kafka at %s)",
        stage,
        settings.claimx_env,
        settings.kafka_bootstrap_servers,
    )
    # Kubernetes stops pods with SIGTERM; ending the inputs drains the dataflow and exits 0,
    # which is cheaper than the replay after a kill (which recovery covers too).
    shutdown.install()
    metrics.set_stage(stage)
    serve(stage, settings)  # first: the probes answer while a start waits out an outage
    for check in await_ready(stage, settings):
        if not check.ok:
            log.warning("%s: %s", check.name, check.detail)
    metrics.watch_dlq_depth(stage, settings)


OUTAGE_RECHECK_S = 5.0
"""How often a start held by an outage checks again."""
OUTAGE_NOTE_EVERY_S = 60.0
STOP_POLL_S = 0.2


def await_ready(stage: str, settings: Settings, recheck_s: float = OUTAGE_RECHECK_S) -> list[Check]:
    """The stage's preflight checks once they pass; exit 2 saying why if one fails for a
    reason waiting will not mend (a missing topic, a refused login, a recovery directory of
    another cluster).

    While every failure is a peer that is down (Kafka unreachable, OneLake unavailable), the
    start waits and checks again, saying so every minute, rather than exit: Kubernetes would
    only start it again into the same outage, and back off further each time. The wait counts
    as no stall for liveness; SIGTERM ends it with exit 0."""
    started = time.monotonic()
    noted: float | None = None
    running_with = process_recovery_directory(sys.argv[1:], os.environ)
    if running_with is not None:  # ``-r`` alone: where the checks must look too
        os.environ[RECOVERY_DIRECTORY_ENV] = str(running_with)
    recovery_in_use = running_with is not None
    while True:
        try:
            checks = require_ready(settings, stage, recovery_in_use=recovery_in_use)
        except PreflightError as exc:
            if not exc.outage:
                log.error("%s", exc)
                raise SystemExit(2) from None
            now = time.monotonic()
            if noted is None or now - noted >= OUTAGE_NOTE_EVERY_S:
                log.warning("%s; waiting, checking again every %.0fs", exc, recheck_s)
                noted = now
        else:
            if noted is not None:
                log.info(
                    "%s: checks pass after %.0fs of waiting", stage, time.monotonic() - started
                )
            return checks
        until = time.monotonic() + recheck_s
        while time.monotonic() < until:  # polled: a handler must not wait on a lock we hold
            health.waiting_to_start()
            if shutdown.requested():
                log.info("%s: SIGTERM while waiting to start; exiting", stage)
                raise SystemExit(0)
            time.sleep(STOP_POLL_S)
