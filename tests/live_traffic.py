"""Records produced into one partition in the background: the live traffic a bounded read
must not mistake for progress on the partitions it still waits for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Producer


@contextmanager
def live_traffic(
    producer: Producer, topic: str, partition: int, most_s: float = 20
) -> Iterator[None]:
    """A record every 20 ms into ``topic[partition]`` until the block ends (``most_s`` at most)."""
    stop = threading.Event()

    def produce() -> None:
        deadline = time.monotonic() + most_s
        while not stop.is_set() and time.monotonic() < deadline:
            producer.produce(topic, b"live", partition=partition)
            producer.flush(1)
            time.sleep(0.02)

    busy = threading.Thread(target=produce)
    busy.start()
    try:
        yield
    finally:
        stop.set()
        busy.join()
