"""The runbook's commands of the system this one replaces, kept as thin aliases.

``python -m kafka_pipeline --worker claimx-enricher`` is ``python -m bytewax.run
dataflows.enrich``, and ``python -m kafka_pipeline.claimx.dlq.cli`` is ``claimx dlq``: the
scripts and cron jobs written against the runbook keep working. Nothing here has a behaviour of
its own.
"""
