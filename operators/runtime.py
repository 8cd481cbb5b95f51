"""Process-level behaviour every dataflow shares."""

from __future__ import annotations

import logging

from claimx_flow.config import Settings
from claimx_flow.runtime import metrics
from claimx_flow.runtime.health import serve
from claimx_flow.runtime.preflight import PreflightError, require_ready
from operators import shutdown


def setup_process(stage: str, settings: Settings, level: int = logging.INFO) -> None:
    """What every stage process does first: log to stderr, stop gracefully on SIGTERM, name
    its stage on every metric, check it can run (or exit 2 saying why), and serve health
    probes and metrics on the stage's port."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    graceful_sigterm()
    metrics.set_stage(stage)
    try:
        for check in require_ready(settings, stage):
            if not check.ok:
                logging.getLogger(__name__).warning("%s: %s", check.name, check.detail)
    except PreflightError as exc:
        logging.getLogger(__name__).error("%s", exc)
        raise SystemExit(2) from None
    serve(stage, settings)


def graceful_sigterm() -> None:
    """Make SIGTERM end the inputs so the dataflow drains and exits 0 (see ``shutdown``).

    Kubernetes stops pods with SIGTERM; a clean stop is cheaper than the replay after a kill
    (which recovery covers too).
    """
    shutdown.install()
