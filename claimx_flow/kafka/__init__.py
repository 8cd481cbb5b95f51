"""Kafka: client settings, topics, records, lag and backfill."""
