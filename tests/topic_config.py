"""Set a topic's configs and wait until the broker reports them.

The broker answers an alter once its controller has the change and applies it a moment later.
A record produced in between meets the old config: under load in CI, a 4 MiB record was refused
by a topic whose limit had just been raised to 4 MiB. So every test that changes a topic's
config and then uses the topic goes through here.
"""

from __future__ import annotations

import time

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from claimx_flow.config import Settings
from claimx_flow.kafka.topics import admin_client

SETTLE_S = 0.5


def set_topic_config(settings: Settings, topic: str, **values: str) -> None:
    """Configs by their Kafka names with ``_`` for ``.`` (``max_message_bytes="4194304"``)."""
    wanted = {name.replace("_", "."): value for name, value in values.items()}
    entries = [
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in wanted.items()
    ]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
    admin = admin_client(settings)  # held until the answer: a collected client drops it
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    plain = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + 30
    while True:
        entries_now = admin.describe_configs([plain])[plain].result(timeout=30)
        if all(entries_now[name].value == value for name, value in wanted.items()):
            # What describe reads (the broker's metadata cache) is updated a step before the
            # log's own config, in the same metadata publish (apache/kafka
            # BrokerMetadataPublisher); no request shows the second step, so give it a moment.
            time.sleep(SETTLE_S)
            return
        assert time.monotonic() < deadline, f"{topic}: {wanted} not applied in 30 s"
        time.sleep(0.05)
