"""Failure routing: which retry tier or DLQ a failed message goes to."""
