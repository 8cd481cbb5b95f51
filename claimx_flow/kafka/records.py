"""Kafka records as the domain sees them, free of any client or runtime types.

A consumed record keeps where it came from (topic, partition, offset, timestamp), so a failure
can always name the exact message it is about; an outbound record says where it goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One message read from Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    error: str | None = None
    """Set when the Kafka client could not read the message (corrupt, not decompressible):
    it has no value, only a place, and belongs in a DLQ."""

    @property
    def position(self) -> str:
        """``topic[partition]@offset``: how logs and errors name the message."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """One message to write to Kafka."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
