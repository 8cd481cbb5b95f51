"""A routed failure is a log line an operator can grep, as the runbook's troubleshooting does
(``kubectl logs -l app=claimx-enricher | grep "API error"``, ``grep "expired"``, ``grep
"upload failed"``), one per kind a minute: an outage fails thousands a second."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka import repeats
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.routing.failures import API_ERROR_CLASS, FailureRouter, routed_log


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == routed_log.name]


def test_one_line_per_kind_a_minute_with_the_rest_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlq = f"dlq-{uuid.uuid4().hex[:6]}"  # a kind of its own: the filter outlives a test
    router = FailureRouter("enrich", dlq, secrets=("s3cr3t-pass",))
    offsets = iter(range(7, 100))

    def fail() -> None:  # each its own record; a gateway's page of several lines as the reason
        record = KafkaRecord("claimx.enrichment.pending", 0, next(offsets), None, b"k", b"{}", [])
        router.route(
            record,
            reason="HTTP 401 refused s3cr3t-pass: <html>\r\n<head><title>401</title></head>\r\n",
            error_class="ClaimXApiError",
            category=ErrorCategory.PERMANENT,
        )

    with caplog.at_level(logging.WARNING, logger=routed_log.name):
        for _ in range(5):
            fail()
        (first,) = lines(caplog)
        assert first.startswith(f"enrich: API error (ClaimXApiError, permanent) → DLQ {dlq} | ")
        assert "HTTP 401" in first and "claimx.enrichment.pending[0]@7" in first
        assert "\n" not in first and "<html> <head>" in first  # one line, as written
        assert "s3cr3t-pass" not in first  # masked as in the DLQ copy
        later = time.monotonic() + 61
        monkeypatch.setattr(repeats.time, "monotonic", lambda: later)
        fail()
    assert lines(caplog)[1].endswith("(and 4 more like it in 60s)")


@pytest.mark.parametrize(
    ("stage", "reason", "error_class", "words"),
    [
        ("download", "presigned URL expired", "DownloadError", "download failed"),
        ("upload", "OneLake answered 503", "StorageError", "upload failed"),
        ("ingest", "not JSON", "MalformedMessageError", "event failed"),
    ],
)
def test_each_stage_says_what_failed_in_the_runbooks_words(
    caplog: pytest.LogCaptureFixture, stage: str, reason: str, error_class: str, words: str
) -> None:
    router = FailureRouter(stage, f"dlq-{uuid.uuid4().hex[:6]}")  # type: ignore[arg-type]
    record = KafkaRecord("in", 1, 2, None, b"k", b"{}", [])
    with caplog.at_level(logging.WARNING, logger=routed_log.name):
        router.route(
            record, reason=reason, error_class=error_class, category=ErrorCategory.TRANSIENT
        )
    (line,) = lines(caplog)
    assert line.startswith(f"{stage}: {words} ({error_class}, transient)") and reason in line


def test_a_stops_hand_back_is_no_failure_to_warn_of(caplog: pytest.LogCaptureFixture) -> None:
    """A stage stopping hands what it had not got to back to its tier (``spend_attempt=False``):
    said at INFO, so a rollout writes no WARNING per task."""
    router = FailureRouter("enrich", f"dlq-{uuid.uuid4().hex[:6]}")
    record = KafkaRecord("claimx.enrichment.pending", 0, 1, None, b"k", b"{}", [])
    with caplog.at_level(logging.INFO, logger=routed_log.name):
        router.route(
            record,
            reason="stopping",
            error_class="Stopping",
            category=ErrorCategory.TRANSIENT,
            spend_attempt=False,
        )
    (line,) = [r for r in caplog.records if r.name == routed_log.name]
    assert line.levelno == logging.INFO


def test_the_api_error_class_is_named_as_the_client_raises_it() -> None:
    assert ClaimXApiError.__name__ == API_ERROR_CLASS
