"""A producer that sends header names as raw bytes, through librdkafka itself.

Kafka's protocol carries a header name as bytes, and a producer outside Python (Go, .NET, C:
the clients built on librdkafka) may send ones that are not UTF-8. confluent-kafka's Python
producer cannot: it turns a ``bytes`` name into the text ``"b'...'"``. So this calls the
librdkafka that confluent-kafka ships, with ``ctypes``: the real client library, used as those
producers use it, not a mock.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

import confluent_kafka

_TYPE_END, _TYPE_TOPIC, _TYPE_PARTITION, _TYPE_VALUE, _TYPE_FLAGS, _TYPE_HEADERS = 0, 1, 3, 4, 7, 10
"""``rd_kafka_vtype_t`` in librdkafka's ``rdkafka.h``: the tags of ``rd_kafka_producev``."""
_COPY = 0x2
"""``RD_KAFKA_MSG_F_COPY``: librdkafka copies the value."""
_PRODUCER = 0
"""``RD_KAFKA_PRODUCER``."""


@cache
def _librdkafka() -> ctypes.CDLL:
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka-*.so*"))
    assert found, f"no librdkafka in {libs}: the pinned manylinux wheel of confluent-kafka has one"
    path = found[0]
    lib = ctypes.CDLL(str(path))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_headers_new.restype = ctypes.c_void_p
    lib.rd_kafka_headers_new.argtypes = [ctypes.c_size_t]
    lib.rd_kafka_header_add.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ssize_t,
        ctypes.c_char_p,
        ctypes.c_ssize_t,
    ]
    lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    return lib


def produce_raw_headers(
    bootstrap: str, topic: str, messages: list[tuple[bytes, list[tuple[bytes, bytes]]]]
) -> None:
    """Send each ``(value, headers)`` to partition 0 of ``topic``, in order, with its headers
    named byte for byte."""
    lib = _librdkafka()
    error = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), error, 512) == 0
    assert lib.rd_kafka_conf_set(conf, b"enable.idempotence", b"true", error, 512) == 0  # order
    producer = lib.rd_kafka_new(_PRODUCER, conf, error, 512)
    assert producer, error.value
    try:
        for value, headers in messages:
            names = lib.rd_kafka_headers_new(len(headers))
            for name, data in headers:
                assert lib.rd_kafka_header_add(names, name, len(name), data, len(data)) == 0
            sent = lib.rd_kafka_producev(
                ctypes.c_void_p(producer),
                ctypes.c_int(_TYPE_TOPIC),
                ctypes.c_char_p(topic.encode()),
                ctypes.c_int(_TYPE_PARTITION),
                ctypes.c_int32(0),
                ctypes.c_int(_TYPE_FLAGS),
                ctypes.c_int(_COPY),
                ctypes.c_int(_TYPE_VALUE),
                ctypes.c_char_p(value),
                ctypes.c_size_t(len(value)),
                ctypes.c_int(_TYPE_HEADERS),
                ctypes.c_void_p(names),  # the message owns them once produced
                ctypes.c_int(_TYPE_END),
            )
            assert sent == 0, f"rd_kafka_producev: error {sent}"
        assert lib.rd_kafka_flush(producer, 30_000) == 0, "not delivered in 30 s"
    finally:
        lib.rd_kafka_destroy(producer)
