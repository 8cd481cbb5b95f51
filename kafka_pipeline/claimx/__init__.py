"""The runbook's ``kafka_pipeline.claimx`` modules: only the DLQ command line is kept."""
