"""What a bounded read of some partitions still waits for.

A read from given offsets to fixed ends (a trace's window, a DLQ replay's range) must end: each
partition is let go as soon as it reaches its end, so live traffic past the end neither keeps
arriving nor keeps the read looking busy, and each partition left is timed on its own, so one
that answers nothing (its leader gone: no message and no error either) is found while others
still deliver.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

Place = tuple[str, int]
"""A topic and one of its partitions."""


class PartitionsLeft:
    """The partitions a read still waits for, each with the moment it last sent something."""

    def __init__(self, consumer: Consumer, ends: dict[Place, int], idle_s: float) -> None:
        self.consumer = consumer
        self.ends = ends
        self.idle_s = idle_s
        now = time.monotonic()
        self.last_heard = dict.fromkeys(ends, now)

    def __bool__(self) -> bool:
        return bool(self.last_heard)

    def heard(self, place: Place, offset: int) -> bool:
        """Whether a message at ``offset`` of ``place`` is still wanted (it is below the end of
        a partition not yet done); a partition past its end is done."""
        if place not in self.last_heard:
            return False
        if offset >= self.ends[place]:
            self.done(place)
            return False
        self.last_heard[place] = time.monotonic()
        return True

    def done(self, place: Place) -> None:
        """Stop waiting for ``place`` and stop fetching it."""
        if self.last_heard.pop(place, None) is not None:
            self.consumer.incremental_unassign([TopicPartition(*place)])

    def idle(self) -> list[Place]:
        """The partitions silent for longer than ``idle_s``."""
        now = time.monotonic()
        return sorted(p for p, at in self.last_heard.items() if now - at > self.idle_s)

    def give_up_idle(self) -> list[str]:
        """The partitions silent for longer than ``idle_s``, let go."""
        idle = self.idle()
        for place in idle:
            self.done(place)
        return [f"{topic}[{partition}]" for topic, partition in idle]
