"""``python -m kafka_pipeline.claimx.dlq.cli list|inspect|replay|purge``: ``claimx dlq``.

The runbook's DLQ command line, kept for the scripts and cron jobs that call it; the commands,
their options and their exit codes are ``claimx dlq``'s (docs/dlq.md).
"""

from __future__ import annotations

from claimx_flow.dlq.cli import main

if __name__ == "__main__":
    main(prog_name="python -m kafka_pipeline.claimx.dlq.cli")
