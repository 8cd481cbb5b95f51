"""``python -m kafka_pipeline --worker claimx-<worker> [--dry-run]``, the runbook's worker command.

The worker names are the runbook's (``claimx-ingester``, ``claimx-enricher``, ``claimx-downloader``,
``claimx-uploader``, ``claimx-result-processor``; ``claimx-retry`` is ours). A worker runs as
``python -m bytewax.run dataflows.<stage>``, which replaces this process, so the signals and the
exit status are the stage's own; any further arguments go to ``bytewax.run`` (``-w``, ``-r``, …).
``--dry-run``, the runbook's "verify configuration", is ``claimx check --stage <stage>``.
"""

from __future__ import annotations

import argparse
import os
import sys

from claimx_flow.catalog import STAGES

WORKERS = {spec.worker: name for name, spec in STAGES.items()}
"""The runbook's worker name of each stage."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kafka_pipeline",
        description="The runbook's worker command: runs python -m bytewax.run dataflows.<stage>.",
        allow_abbrev=False,  # "-w 2" and the like are bytewax.run's, never a short --worker
    )
    parser.add_argument("--worker", required=True, choices=sorted(WORKERS))
    parser.add_argument(
        "--dry-run", action="store_true", help="check only (claimx check --stage <stage>)"
    )
    known, rest = parser.parse_known_args(argv)
    stage = WORKERS[known.worker]
    if known.dry_run:
        if rest:  # a check that ignored them would check something else than what would run
            parser.error(f"--dry-run takes no bytewax.run arguments: {' '.join(rest)}")
        from claimx_flow.cli import main as claimx

        sys.argv = ["claimx", "check", "--stage", stage]
        claimx()
        return
    command = [sys.executable, "-m", "bytewax.run", f"dataflows.{stage}", *rest]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
