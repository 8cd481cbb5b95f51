"""librdkafka configuration from the settings, the same for every client the project creates.

Keeping this in one place is what makes SASL/SSL settings reach every producer, consumer and
admin client alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from claimx_flow.config import Settings
from claimx_flow.errors import ClaimxError, KafkaAdminError
from claimx_flow.kafka.repeats import RepeatFilter

T = TypeVar("T")

# librdkafka's own log lines (connection refused, retries…) go through this logger rather than
# straight to stderr, so a command line can keep them quiet and a worker can keep them.
LIBRDKAFKA_LOGGER = logging.getLogger("claimx_flow.librdkafka")
# A line per reconnect of every client while a broker is down: once a minute is enough.
LIBRDKAFKA_LOGGER.addFilter(RepeatFilter(r"\[rdkafka#[^\]]*\] |\[thrd:[^\]]*\]: |\d+ms"))


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection and security settings common to producers, consumers and admin clients."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        "logger": LIBRDKAFKA_LOGGER,
        "error_cb": _on_client_error,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # enforced by Settings validation
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_location is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


_REFUSALS = {
    KafkaError._AUTHENTICATION: "authentication failed",
    KafkaError.SASL_AUTHENTICATION_FAILED: "authentication failed",
    KafkaError._SSL: "TLS handshake failed",
}
"""What librdkafka reports, asynchronously only, when brokers that answer refuse us."""
REFUSED = tuple(sorted(set(_REFUSALS.values())))
"""How :func:`failure_reason` begins when the brokers answered and refused the client: a
finding (credentials, certificates), not an outage."""
_RECENT_S = 5.0


@dataclass
class _Refusal:
    """The latest refusal (login or TLS) any client of this process reported, and when."""

    text: str = ""
    at: float = -_RECENT_S


_refused = _Refusal()
_refused_lock = threading.Lock()


def _on_client_error(error: KafkaError) -> None:
    """librdkafka's asynchronous errors, logged as librdkafka logs them without a callback.

    A refused login or TLS handshake reaches the caller only as "broker transport failure";
    it is remembered here so that the caller's message can say what happened.
    """
    named = _REFUSALS.get(error.code())
    if named is not None:
        with _refused_lock:
            _refused.text, _refused.at = f"{named} ({error.str()})", time.monotonic()
    LIBRDKAFKA_LOGGER.error("%s", error.str())  # its repeats are dropped (RepeatFilter)


def recent_refusal() -> str | None:
    """The refusal (login or TLS) a client of this process reported in the last few seconds,
    beginning with one of ``REFUSED``; None if none. librdkafka retries a refused login every
    few hundred ms, so a refusal that goes on stays recent."""
    with _refused_lock:
        return _refused.text if time.monotonic() - _refused.at < _RECENT_S else None


def failure_reason(client: Any, error: KafkaException) -> str:
    """Why a Kafka request failed, in librdkafka's words, naming a refused login or TLS
    handshake as such (it begins with one of ``REFUSED``).

    Serves the client's queued events first: that is where its authentication failure waits
    (librdkafka keeps retrying the login until the request times out). librdkafka never puts
    the password in its messages.
    """
    cause = error.args[0] if error.args and isinstance(error.args[0], KafkaError) else None
    client.poll(0)
    refused = recent_refusal()
    if refused and cause is not None and cause.code() == KafkaError._TRANSPORT:
        return refused
    return cause.str() if cause is not None else str(error)


# The producer's own cap on a request. librdkafka's default (1 MB) is below what a topic may be
# configured to hold: a dead-letter copy of a large message the broker accepted on the way in
# would then fail in the client and stop the stage. The broker still enforces each topic's
# ``max.message.bytes``; this only keeps the client from refusing first.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A producer that never loses or duplicates on its own retries: idempotent, acks=all."""
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.kafka_linger_ms,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
        **extra,
    }


def produce_or_wait(producer: Any, topic: str, **message: Any) -> None:
    """``producer.produce(topic, **message)``, waiting while the local queue is full: a full
    queue means deliveries are behind, so serve their reports and try again."""
    while True:
        try:
            producer.produce(topic, **message)
            return
        except BufferError:
            producer.poll(0.05)


def consumer_config(settings: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer that commits only what the caller says is done."""
    return {
        **client_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    }


# What a partition answers while its leader is still being elected, or a group while its
# coordinator is still loading: a cluster that is settling, not one that refuses.
SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)


def settled(
    call: Callable[[], T],
    *,
    what: str,
    timeout_s: float,
    reason: Callable[[KafkaException], str] = str,
    settling: Collection[int] = SETTLING,
    pause_s: float = 0.2,
    error: type[ClaimxError] = KafkaAdminError,
) -> T:
    """``call()``, tried again while the cluster is settling (new topics without a leader,
    a coordinator still loading), for at most ``timeout_s``; then an ``error`` that says it
    could not ``what``, in ``reason``'s words."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except TimeoutError:  # a request future that got no answer: nobody there
            raise error(f"cannot {what}: Kafka gave no answer within {timeout_s:.0f}s") from None
        except KafkaException as exc:
            cause = exc.args[0] if exc.args else None
            waiting = isinstance(cause, KafkaError) and (
                cause.retriable() or cause.code() in settling
            )
            if not waiting or time.monotonic() > deadline:
                raise error(f"cannot {what}: {reason(exc)}") from None
            time.sleep(pause_s)
