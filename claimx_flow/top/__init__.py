"""``claimx top``: the whole pipeline live, one row per stage process.

Rates come from two scrapes of each process's own ``/metrics`` counters, readiness from its
``/health/ready``; lag, retry-tier and DLQ depth from the broker (consumer groups and
watermarks). Command-line side: no stage imports this package.
"""
