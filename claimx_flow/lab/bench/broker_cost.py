"""What a producer's ``linger.ms`` costs the broker, per message written.

Starts a broker of its own, then for each linger writes the same messages (620 bytes, keyed,
six partitions) at a steady rate, as a stage writes its outputs, with the stages' producer
settings otherwise, and prints the broker's CPU per message. The broker shares the machine's
cores with every stage, so what it spends per message is taken from them. The first round
warms the broker up (its JVM compiles with C1 alone, ``JVM_OPTIONS`` in the lab's Kafka
service, and settles within it); compare the later rounds.

    python -m claimx_flow.lab.bench.broker_cost --messages 150000 --rate 20000 --linger 5,10,20,50
"""

from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from claimx_flow.config import Settings
from claimx_flow.kafka.clients import producer_config
from claimx_flow.lab.bench.thread_cpu import process_cpu_s
from claimx_flow.lab.stack.kafka import scratch_broker

VALUE = b'{"payload":"' + b"a" * 600 + b'"}'


def cpu_per_message(
    bootstrap: str, broker_pid: int, linger_ms: int, messages: int, rate: int
) -> tuple[float, float]:
    """Microseconds of CPU per message of the broker and of this producing process (its Python
    loop and librdkafka's threads), for ``messages`` written at ``rate`` a second."""
    topic = f"linger-{linger_ms}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: a freed client drops its calls
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result()
    time.sleep(1.0)  # the partitions' leaders settle
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka_linger_ms=linger_ms)
    producer = Producer(producer_config(settings))
    before, client_before = process_cpu_s(broker_pid), time.process_time()
    started = time.monotonic()
    for i in range(messages):
        producer.produce(topic, VALUE, str(i).encode())
        if i % 200 == 0:
            producer.poll(0)
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(60)
    broker = process_cpu_s(broker_pid) - before
    client = time.process_time() - client_before
    return broker / messages * 1e6, client / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=150_000)
    parser.add_argument("--rate", type=int, default=20_000, help="messages a second")
    parser.add_argument("--linger", default="5,10,20,50", help="linger.ms values, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    lingers = [int(x) for x in args.linger.split(",")]
    with scratch_broker("claimx-broker-cost-") as broker:
        for round_ in range(1, args.rounds + 1):
            for linger in lingers:
                broker_us, client_us = cpu_per_message(
                    broker.endpoint, broker.pid, linger, args.messages, args.rate
                )
                print(
                    f"round {round_}: linger.ms {linger:>4}: broker {broker_us:5.1f} µs, "
                    f"producer {client_us:5.1f} µs of CPU per message "
                    f"({args.messages:,} at {args.rate:,}/s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
