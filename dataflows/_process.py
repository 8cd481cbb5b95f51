"""What every stage process does before its dataflow runs, and the lazily built ``flow``.

``python -m bytewax.run dataflows.<stage>`` looks up the module's ``flow``. Each stage module
builds it on that first look-up (``__getattr__``), after the process set-up here: logging,
graceful SIGTERM, the stage's metric label, the preflight checks and the health server. Tests
call the module's ``build(settings)`` instead and get the dataflow with none of that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bytewax.dataflow import Dataflow

from claimx_flow.config import Settings, load_settings
from claimx_flow.runtime import metrics
from claimx_flow.runtime.health import serve
from claimx_flow.startup.preflight import PreflightError, require_ready
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
        settings = load_settings()
        setup_process(stage, settings)
        _built[stage] = build(settings)
        if after_build is not None:
            after_build()
    return _built[stage]


def setup_process(stage: str, settings: Settings, level: int = logging.INFO) -> None:
    """What every stage process does first: log to stderr, stop gracefully on SIGTERM, name
    its stage on every metric, check it can run (or exit 2 saying why), serve health
    probes and metrics on the stage's port, and export the depth of the DLQ it writes."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # Kubernetes stops pods with SIGTERM; ending the inputs drains the dataflow and exits 0,
    # which is cheaper than the replay after a kill (which recovery covers too).
    shutdown.install()
    metrics.set_stage(stage)
    try:
        for check in require_ready(settings, stage):
            if not check.ok:
                log.warning("%s: %s", check.name, check.detail)
    except PreflightError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    serve(stage, settings)
    metrics.watch_dlq_depth(stage, settings)
