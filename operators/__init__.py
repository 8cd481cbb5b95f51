"""Reusable Bytewax operators for the ClaimX dataflows (Kafka I/O, async steps, commit sinks)."""
