"""The runbook's ``kafka_pipeline.claimx.dlq``: see ``cli``."""
