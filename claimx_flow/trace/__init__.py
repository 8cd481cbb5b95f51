"""``claimx trace``: everything the pipeline knows about one event, project or media file.

Read-only and bounded: Delta reads push their filter down to the table, Kafka scans start at
the offset of ``--since`` and stop at the end seen when they began, keyed topics are read only
in the partition the key goes to, and ``--limit`` caps the messages read. Command-line side:
no stage imports this package.
"""
