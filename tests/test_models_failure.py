"""Failure metadata: built per way of failing, secrets masked, exact round trip via headers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, RecordBatch
from claimx_flow.models import (
    HEADER_PREFIX,
    FailureInfo,
    MalformedHeadersError,
    MalformedMessageError,
    MessageIds,
    MessageOrigin,
    RawEvent,
    describe_error,
    redact,
    redact_credentials,
    replace_failure_headers,
    truncate,
)
from claimx_flow.models.failure import MAX_CLASS_CHARS
from claimx_flow.models.redaction import MAX_ERROR_CHARS
from claimx_flow.stages.ingest import Ingester

instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)

failures = st.builds(
    FailureInfo,
    original_topic=st.text(min_size=1, max_size=60),
    original_partition=st.integers(min_value=0, max_value=10_000),
    original_offset=st.integers(min_value=0, max_value=2**63 - 1),
    original_timestamp=st.none() | instants,
    stage=st.sampled_from(["ingest", "enrich", "download", "upload", "results"]),
    error_category=st.sampled_from(list(ErrorCategory)),
    error_class=st.text(min_size=1, max_size=60),
    error_message=st.text(max_size=2 * MAX_ERROR_CHARS),
    attempt=st.integers(min_value=0, max_value=100),
    first_failed_at=instants,
    last_failed_at=instants,
    due_at=st.none() | instants,
    project_id=st.none() | ids,
    event_id=st.none() | ids,
    media_id=st.none() | ids,
    replay_count=st.integers(min_value=0, max_value=100),
)

ORIGIN = MessageOrigin("claimx.enrichment.pending", 3, 1234, datetime(2024, 1, 1, tzinfo=UTC))
T0 = datetime(2024, 1, 4, 12, 0, tzinfo=UTC)


def failed(error: BaseException, *, secrets: Iterable[str] = (), **where: Any) -> FailureInfo:
    """``error``'s envelope as the failure router builds one: its message with the stage's
    secrets masked, its type's name as the class."""
    return FailureInfo.from_reason(
        redact(str(error), secrets), error_class=type(error).__name__, **where
    )


def test_first_failure_records_where_what_and_when() -> None:
    info = failed(
        TimeoutError("API call timed out"),
        origin=ORIGIN,
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
        ids=MessageIds(project_id="1", event_id="e1"),
        due_at=T0 + timedelta(seconds=300),
        now=T0,
    )
    assert info.origin == ORIGIN
    assert (info.attempt, info.first_failed_at, info.last_failed_at) == (1, T0, T0)
    assert info.due_at == T0 + timedelta(seconds=300)
    assert (info.error_class, info.error_message) == ("TimeoutError", "API call timed out")
    assert info.ids == MessageIds(project_id="1", event_id="e1")
    assert info.replay_count == 0


def test_clock_is_read_when_no_time_is_given() -> None:
    before = datetime.now(UTC)
    info = FailureInfo.from_reason(
        "unknown event type FOO",
        error_class="UNKNOWN_EVENT_TYPE",
        origin=ORIGIN,
        stage="enrich",
        category=ErrorCategory.PERMANENT,
    )
    assert before <= info.first_failed_at == info.last_failed_at <= datetime.now(UTC)


def test_failing_again_counts_up_and_keeps_the_history() -> None:
    first = failed(
        ConnectionError("reset"),
        origin=ORIGIN,
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
        ids=MessageIds(project_id="1", event_id="e1"),
        now=T0,
    ).model_copy(update={"replay_count": 2})
    later = T0 + timedelta(minutes=5)
    tier = MessageOrigin("claimx.enrichment.pending.retry.5m", 0, 9)
    second = failed(
        ValueError("404 project not found"),
        origin=tier,
        stage="enrich",
        category=ErrorCategory.PERMANENT,
        previous=first,
        ids=MessageIds(media_id="m"),
        now=later,
    )
    assert second.attempt == 2
    assert (second.first_failed_at, second.last_failed_at) == (T0, later)
    assert second.origin == ORIGIN  # where the message first came from, for replays
    assert second.replay_count == 2
    assert second.ids == MessageIds(project_id="1", event_id="e1", media_id="m")
    assert (second.error_class, second.error_category) == ("ValueError", ErrorCategory.PERMANENT)
    assert second.due_at is None


def test_parse_errors_are_permanent_and_keep_the_reason() -> None:
    """As the ingest stage dead-letters an event it cannot read."""
    with pytest.raises(MalformedMessageError) as caught:
        RawEvent.from_kafka(b"{}")
    record = KafkaRecord(ORIGIN.topic, ORIGIN.partition, ORIGIN.offset, 0, b"k", b"{}")
    (letter,) = Ingester.from_settings(Settings()).ingest(RecordBatch("0", [record])).records
    info = FailureInfo.from_headers(letter.headers)
    assert info.error_message == caught.value.reason
    assert info.stage == "ingest"
    assert info.error_category is ErrorCategory.PERMANENT
    assert info.error_class == "MalformedMessageError"
    assert info.error_message.startswith("missing field event_type")


def test_error_messages_are_redacted_and_bounded() -> None:
    error = RuntimeError(
        "GET https://svc:pa55@api.test/x failed; Authorization: Basic dXNlcjpwYXNz; "
        "token=abc123 api-secret-value " + "x" * 5000
    )
    info = failed(
        error,
        origin=ORIGIN,
        stage="enrich",
        category=ErrorCategory.AUTH,
        secrets=["api-secret-value"],
    )
    for secret in ("pa55", "dXNlcjpwYXNz", "abc123", "api-secret-value"):
        assert secret not in info.error_message
    assert len(info.error_message) == MAX_ERROR_CHARS
    assert info.error_message.endswith("…")


def test_direct_construction_cannot_store_a_credential() -> None:
    info = FailureInfo.from_reason(
        "password=hunter2",
        error_class="X",
        origin=ORIGIN,
        stage="upload",
        category=ErrorCategory.AUTH,
    )
    assert info.error_message == "password=***"
    assert info.model_copy(update={"error_message": "ok"}).error_message == "ok"


# Headers ------------------------------------------------------------------------------------


@given(failures)
def test_headers_round_trip_exactly(info: FailureInfo) -> None:
    headers = info.to_headers()
    assert all(name.startswith(HEADER_PREFIX) for name, _ in headers)
    assert all(isinstance(value, bytes) for _, value in headers)
    assert FailureInfo.from_headers(headers) == info
    assert FailureInfo.from_headers(headers).to_headers() == headers


@given(failures, st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=20)), max_size=5))
def test_unrelated_headers_are_ignored(
    info: FailureInfo, others: list[tuple[str, bytes | None]]
) -> None:
    unrelated = [(name, value) for name, value in others if not name.startswith(HEADER_PREFIX)]
    unrelated += [("claimx.some_future_field", b"?"), ("traceparent", None)]
    headers = [*unrelated[:2], *info.to_headers(), *unrelated[2:]]
    assert FailureInfo.from_headers(headers) == info
    assert FailureInfo.maybe_from_headers(headers) == info
    assert FailureInfo.maybe_from_headers(unrelated) is None
    assert FailureInfo.maybe_from_headers(None) is None
    assert FailureInfo.maybe_from_headers(iter(headers)) == info


def test_header_names() -> None:
    info = failed(
        RuntimeError("x"),
        origin=ORIGIN,
        stage="download",
        category=ErrorCategory.TRANSIENT,
        ids=MessageIds(project_id="1", event_id="e", media_id="m"),
        due_at=T0,
        now=T0,
    )
    assert dict(info.to_headers()) == {
        "claimx.original_topic": b"claimx.enrichment.pending",
        "claimx.original_partition": b"3",
        "claimx.original_offset": b"1234",
        "claimx.original_timestamp": b"2024-01-01T00:00:00+00:00",
        "claimx.stage": b"download",
        "claimx.error_category": b"transient",
        "claimx.error_class": b"RuntimeError",
        "claimx.error_message": b"x",
        "claimx.attempt": b"1",
        "claimx.first_failed_at": b"2024-01-04T12:00:00+00:00",
        "claimx.last_failed_at": b"2024-01-04T12:00:00+00:00",
        "claimx.due_at": b"2024-01-04T12:00:00+00:00",
        "claimx.project_id": b"1",
        "claimx.event_id": b"e",
        "claimx.media_id": b"m",
        "claimx.replay_count": b"0",
    }


def _headers_with(name: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
    info = failed(
        RuntimeError("x"), origin=ORIGIN, stage="enrich", category=ErrorCategory.TRANSIENT
    )
    return [(n, value if n == name else v) for n, v in info.to_headers()]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "no failure headers"),
        ([("claimx.attempt", b"1")], "missing header claimx.original_topic"),
        (_headers_with("claimx.attempt", b"three"), "bad value for header claimx.attempt"),
        (_headers_with("claimx.attempt", b"-1"), "bad value for header claimx.attempt"),
        (_headers_with("claimx.last_failed_at", b"soon"), "header claimx.last_failed_at"),
        (_headers_with("claimx.error_category", b"fatal"), "header claimx.error_category"),
        (_headers_with("claimx.stage", b"\xff"), "header claimx.stage is not UTF-8"),
        (_headers_with("claimx.stage", None), "header claimx.stage has no value"),
        (
            [*_headers_with("", None), ("claimx.stage", b"enrich")],
            "header claimx.stage appears more than once",
        ),
    ],
)
def test_malformed_headers_are_named(headers: list[tuple[str, bytes | None]], reason: str) -> None:
    with pytest.raises(MalformedHeadersError) as caught:
        FailureInfo.from_headers(headers)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("claimx.attempt", str(2**63).encode()),
        ("claimx.attempt", b"9" * 4300),  # str() of one more would pass Python's digit limit
        ("claimx.replay_count", b"9" * 4300),
        ("claimx.original_offset", str(2**63).encode()),
        ("claimx.original_partition", str(2**31).encode()),
        ("claimx.original_topic", b"t" * 250),  # Kafka's topic names end at 249 characters
    ],
)
def test_numbers_and_names_past_kafkas_are_malformed(name: str, value: bytes) -> None:
    """Headers come from other producers too: a count past Kafka's ``long`` is not read, so no
    envelope written from it can fail to be written."""
    with pytest.raises(MalformedHeadersError, match=f"header {name}"):
        FailureInfo.from_headers(_headers_with(name, value))


def test_the_largest_count_still_counts_and_writes() -> None:
    """At Kafka's largest ``long`` the next failure stays there, and its headers are written."""
    previous = FailureInfo.from_headers(_headers_with("claimx.attempt", str(2**63 - 1).encode()))
    again = failed(
        RuntimeError("y"),
        origin=ORIGIN,
        stage="enrich",
        category=ErrorCategory.TRANSIENT,
        previous=previous,
    )
    assert again.attempt == 2**63 - 1
    assert FailureInfo.from_headers(again.to_headers()) == again


def test_a_long_error_class_from_a_header_is_shortened() -> None:
    info = FailureInfo.from_headers(_headers_with("claimx.error_class", b"E" * 5000))
    assert len(info.error_class) == MAX_CLASS_CHARS


@given(failures, failures)
def test_replacing_the_envelope_keeps_other_headers(old: FailureInfo, new: FailureInfo) -> None:
    headers = [("traceparent", b"00-abc"), *old.to_headers(), ("x", None)]
    replaced = replace_failure_headers(headers, new)
    assert FailureInfo.from_headers(replaced) == new
    assert [h for h in replaced if not h[0].startswith(HEADER_PREFIX)] == [
        ("traceparent", b"00-abc"),
        ("x", None),
    ]


# Redaction ----------------------------------------------------------------------------------

secrets = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1)


@given(st.text(), secrets, st.text())
def test_given_secrets_never_survive(before: str, secret: str, after: str) -> None:
    assert secret not in redact(before + secret + after + secret, [secret])


@given(st.lists(secrets, min_size=1, max_size=4), st.text())
def test_overlapping_secrets_all_go(given_secrets: list[str], glue: str) -> None:
    text = glue.join(given_secrets)
    result = redact(text, given_secrets)
    assert not any(secret in result for secret in given_secrets)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        (
            "headers={'Authorization': 'Bearer eyJ.abc.def'}",
            "headers={'Authorization': 'Bearer ***'}",
        ),
        ("login failed password=hunter2&user=bob", "login failed password=***&user=bob"),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("sasl.password=p@ss;", "sasl.password=***;"),
        ("AccountKey=abc+/==;EndpointSuffix=core", "AccountKey=***;EndpointSuffix=core"),
        ("client_secret: s3cr3t", "client_secret: ***"),
        ("  api_password: @hunter2", "  api_password: ***"),  # a setting's name, ``_`` before
        ("AZURE_CLIENT_SECRET=s3cr3t", "AZURE_CLIENT_SECRET=***"),
        ("onelake_account_key: abc==", "onelake_account_key: ***"),
        (
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k=",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=***",
        ),
        ("keytoken=1 tokens: 3", "keytoken=1 tokens: 3"),  # inside a word: not a key
        (  # our own errors name a variable so: its next word is no secret
            "CLAIMX_API_PASSWORD: input should be a valid string; X_TOKEN: must be set",
            "CLAIMX_API_PASSWORD: input should be a valid string; X_TOKEN: must be set",
        ),
        ("GET https://svc:pa55@api.test/x", "GET https://***@api.test/x"),
        (
            "https://b.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=86400"
            "&X-Amz-Signature=0a1b2c",
            "https://b.s3.amazonaws.com/k.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=***&X-Amz-Date=20240101T000000Z&X-Amz-Expires=86400"
            "&X-Amz-Signature=***",
        ),
        (
            "https://a.blob.core/c/f?sv=2024&sig=AbC%3D&se=x",
            "https://a.blob.core/c/f?sv=2024&sig=***&se=x",
        ),
        ("404 Not Found for media 97138881", "404 Not Found for media 97138881"),
        ("https://host/path?systemDate=1&expires=2", "https://host/path?systemDate=1&expires=2"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert redact_credentials(text) == expected


@given(st.text(max_size=3 * MAX_ERROR_CHARS))
@example("password=" + "x" * (MAX_ERROR_CHARS - 10))
@example("x" * (MAX_ERROR_CHARS - 11) + "password=secret")
def test_making_safe_twice_changes_nothing(text: str) -> None:
    once = truncate(redact_credentials(text))
    assert truncate(redact_credentials(once)) == once
    assert len(once) <= MAX_ERROR_CHARS


def test_describe_error_takes_exceptions_and_text() -> None:
    assert describe_error(KeyError("token=abc")) == "'token=***'"
    assert describe_error("a" * 20, limit=5) == "aaaa…"
