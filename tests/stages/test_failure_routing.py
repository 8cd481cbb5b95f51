"""Routing of task messages: the body's ``retry_count`` follows the ``claimx.attempt`` header
(the rest of the message byte for byte, anything that is not such a JSON object untouched), and a
media file routed to the DLQ — only the DLQ — gets a failed result sent just before its copy."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from claimx_flow.config import Settings
from claimx_flow.dlq.queues import DlqName
from claimx_flow.dlq.replay import replayed_value
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.models import DownloadTask, EnrichmentTask, FailureInfo, UploadResult
from claimx_flow.models.messages import for_attempt
from claimx_flow.routing.failures import FailureRouter
from claimx_flow.routing.tiers import download_ladder, enrichment_ladder

SETTINGS = Settings()
TASK = DownloadTask(
    media_id="5000001001",
    project_id="5000001",
    download_url="https://bucket.s3.amazonaws.com/a.jpg?X-Amz-Signature=secret",
    file_name="a.jpg",
    file_type="jpg",
    source_event_id="evt-1",
)


def download_router() -> FailureRouter:
    return FailureRouter.for_stage(
        SETTINGS, "download", SETTINGS.claimx_downloads_dlq_topic, download_ladder(SETTINGS)
    )


def record(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> KafkaRecord:
    return KafkaRecord("claimx.downloads.pending", 0, 7, None, TASK.kafka_key, value, headers or [])


def fail(router: FailureRouter, rec: KafkaRecord, category: ErrorCategory) -> list[OutboundRecord]:
    return router.route_media(
        rec,
        TASK,
        SETTINGS.claimx_downloads_results_topic,
        reason="HTTP 404 from media host",
        error_class="DownloadError",
        category=category,
    )


def test_each_failure_writes_its_attempt_into_the_body() -> None:
    router = download_router()
    rec = record(TASK.to_json())
    for attempt in range(1, SETTINGS.max_retries + 2):
        routed = fail(router, rec, ErrorCategory.TRANSIENT)[-1]  # a DLQ copy comes last
        info = FailureInfo.from_headers(routed.headers)
        assert info.attempt == attempt
        assert json.loads(routed.value)["retry_count"] == attempt
        assert routed.value == for_attempt(TASK.to_json(), attempt)  # nothing else moved
        rec = record(routed.value, routed.headers)  # the tier releases it; it fails again
    assert routed.topic == SETTINGS.claimx_downloads_dlq_topic


def test_the_dlq_gets_a_failed_result_first_and_a_retry_tier_none() -> None:
    router = download_router()
    (tier,) = fail(router, record(TASK.to_json()), ErrorCategory.TRANSIENT)
    assert tier.topic == SETTINGS.download_retry_topics[0]

    result, letter = fail(router, record(TASK.to_json()), ErrorCategory.PERMANENT)
    assert letter.topic == SETTINGS.claimx_downloads_dlq_topic
    assert result.topic == SETTINGS.claimx_downloads_results_topic
    assert result.key == letter.key == TASK.kafka_key  # one lane: the result goes out first
    sent = UploadResult.from_json(result.value)
    assert (sent.status, sent.error, sent.media_id, sent.project_id, sent.source_event_id) == (
        "failed",
        "HTTP 404 from media host",
        TASK.media_id,
        TASK.project_id,
        TASK.source_event_id,
    )
    assert FailureInfo.from_headers(letter.headers).error_message == sent.error


def test_the_failed_result_is_redacted_like_the_headers() -> None:
    router = FailureRouter.for_stage(
        SETTINGS.model_copy(update={"claimx_api_password": SecretStr("hunter2")}),
        "download",
        SETTINGS.claimx_downloads_dlq_topic,
    )
    result, letter = router.route_media(
        record(TASK.to_json()),
        TASK,
        SETTINGS.claimx_downloads_results_topic,
        reason="GET https://h/a?X-Amz-Signature=abc123 refused, password=hunter2",
        error_class="DownloadError",
        category=ErrorCategory.PERMANENT,
    )
    error = UploadResult.from_json(result.value).error or ""
    assert "abc123" not in error and "hunter2" not in error
    assert error == FailureInfo.from_headers(letter.headers).error_message


def test_exhausted_retries_reach_the_dlq_with_a_result() -> None:
    info = FailureInfo.from_headers(
        fail(download_router(), record(TASK.to_json()), ErrorCategory.TRANSIENT)[0].headers
    ).model_copy(update={"attempt": SETTINGS.max_retries})
    last = record(TASK.to_json(), info.to_headers())
    out = fail(download_router(), last, ErrorCategory.TRANSIENT)
    assert [r.topic for r in out] == [
        SETTINGS.claimx_downloads_results_topic,
        SETTINGS.claimx_downloads_dlq_topic,
    ]
    assert json.loads(out[1].value)["retry_count"] == SETTINGS.max_retries + 1


def test_an_oversized_task_goes_truncated_to_the_dlq_with_its_result() -> None:
    router = FailureRouter.for_stage(
        SETTINGS.model_copy(update={"claimx_dlq_max_message_bytes": 2000}),
        "download",
        SETTINGS.claimx_downloads_dlq_topic,
        download_ladder(SETTINGS),
    )
    big = TASK.model_copy(update={"file_name": "x" * 5000})
    result, letter = fail(router, record(big.to_json()), ErrorCategory.TRANSIENT)
    assert letter.topic == SETTINGS.claimx_downloads_dlq_topic
    assert letter.value == big.to_json()[: len(letter.value or b"")]  # cut, as received
    assert UploadResult.from_json(result.value).status == "failed"


def test_enrichment_tasks_count_in_their_body_too() -> None:
    task = EnrichmentTask.model_validate(
        {
            "event_id": "e1",
            "event_type": "PROJECT_CREATED",
            "project_id": "5",
            "ingested_at": "2026-11-27T10:00:00Z",
        }
    )
    router = FailureRouter.for_stage(
        SETTINGS, "enrich", SETTINGS.claimx_enrichment_dlq_topic, enrichment_ladder(SETTINGS)
    )
    routed = router.route(
        record(task.to_json()),
        reason="HTTP 503",
        error_class="ClaimXApiError",
        category=ErrorCategory.TRANSIENT,
    )
    assert EnrichmentTask.from_json(routed.value).retry_count == 1


def test_raw_events_are_dead_lettered_exactly_as_sent() -> None:
    router = FailureRouter.for_stage(SETTINGS, "ingest", SETTINGS.claimx_events_dlq_topic)
    raw = b'{"event_type": "X", "retry_count": 0, "project_id": "1"}'
    routed = router.route(
        record(raw), reason="bad", error_class="E", category=ErrorCategory.PERMANENT
    )
    assert routed.value == raw


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"{not json",
        b"\xff\xfe{}",
        b"[1, 2]",
        b'"retry_count"',
        b'{"retry_count": "3"}',
        b'{"retry_count": 1.5}',
        b'{"retry_count": true}',
        b'{"retry_count": null}',
        b'{"nested": {"retry_count": 0}}',
        b'{"text": "\\"retry_count\\": 0"}',
        b'{"a": 1' + b"9" * 5000 + b', "retry_count": 0}',  # past Python's int digit limit
    ],
)
def test_bodies_that_are_not_counted_task_objects_stay_byte_for_byte(body: bytes | None) -> None:
    routed = download_router().route(
        record(body), reason="r", error_class="E", category=ErrorCategory.PERMANENT
    )
    assert routed.value == body


def test_only_the_top_level_count_changes_and_every_other_byte_stays() -> None:
    body = (
        b'{ "a" : [1, {"retry_count": 5}], "s": "caf\xc3\xa9 \\u00e9 \\"retry_count\\": 9",'
        b' "retry_count" :\t0 , "z": {"retry_count": 2}}'
    )
    expected = body.replace(b":\t0 ,", b":\t3 ,")
    assert for_attempt(body, 3) == expected


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
        max_size=5,
    ),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=20),
    st.booleans(),
)
def test_any_object_with_a_count_reads_back_with_the_new_count_and_nothing_else(
    document: dict[str, object], old: int, new: int, ascii_only: bool
) -> None:
    document = {**document, "retry_count": old}
    body = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert json.loads(for_attempt(body, new) or b"") == {**document, "retry_count": new}


def test_a_replay_restarts_a_tasks_count_and_sends_a_raw_event_as_is() -> None:
    counted = for_attempt(TASK.to_json(), 4)
    assert replayed_value(DlqName.DOWNLOAD, counted) == TASK.to_json()
    assert replayed_value(DlqName.ENRICHMENT, b"{not json") == b"{not json"
    raw = b'{"retry_count": 4}'
    assert replayed_value(DlqName.EVENTS, raw) == raw


@given(
    key=st.binary(max_size=6000),
    value=st.binary(max_size=6000),
    headers=st.lists(
        st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=3000)), max_size=30
    ),
)
def test_a_dead_letter_copy_fits_whatever_part_of_the_record_is_large(
    key: bytes, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    """Key, value, producer headers, or all three: the copy fits the DLQ's limit (header
    names counted as the UTF-8 they are sent as), keeps our headers, and says what it cut (a
    cut key or value is a prefix, with its size and sha256; producer headers are kept in order
    while they fit, the rest counted)."""
    import hashlib

    from claimx_flow.routing.failures import (
        DROPPED_HEADERS_HEADER,
        ORIGINAL_KEY_SHA256_HEADER,
        ORIGINAL_KEY_SIZE_HEADER,
        ORIGINAL_SIZE_HEADER,
        RECORD_OVERHEAD,
        TRUNCATED_HEADER,
    )

    limit = 4000
    router = FailureRouter.for_stage(
        SETTINGS.model_copy(update={"claimx_dlq_max_message_bytes": limit}),
        "ingest",
        SETTINGS.claimx_events_dlq_topic,
    )
    theirs = [(name, data) for name, data in headers if not name.startswith("claimx.")]
    source = KafkaRecord("claimx.events.raw", 0, 7, None, key, value, theirs)
    copy = router.route(
        source, reason="bad", error_class="MalformedMessageError", category=ErrorCategory.PERMANENT
    )
    named = dict(copy.headers or [])
    size = len(copy.key or b"") + len(copy.value or b"")
    size += sum(len(n.encode()) + len(d) for n, d in copy.headers or []) + RECORD_OVERHEAD
    assert size <= limit
    assert FailureInfo.maybe_from_headers(copy.headers) is not None  # ours, whole
    if named.get(TRUNCATED_HEADER) != b"true":
        assert (copy.key, copy.value) == (key, value)
        assert [h for h in copy.headers or [] if not h[0].startswith("claimx.")] == theirs
        return
    assert value.startswith(copy.value or b"")
    assert named[ORIGINAL_SIZE_HEADER] == str(len(value)).encode()
    if copy.key != key:
        assert key.startswith(copy.key or b"")
        assert named[ORIGINAL_KEY_SIZE_HEADER] == str(len(key)).encode()
        assert named[ORIGINAL_KEY_SHA256_HEADER] == hashlib.sha256(key).hexdigest().encode()
    kept = [h for h in copy.headers or [] if not h[0].startswith("claimx.")]
    assert kept == [h for h in theirs if h in kept]  # in order, none made up
    dropped = int(named.get(DROPPED_HEADERS_HEADER, b"0"))
    assert len(kept) + dropped == len(theirs)


def test_a_header_name_counts_as_the_utf8_it_is_sent_as() -> None:
    """A name of 30,000 four-byte characters is 120,000 bytes on the wire, not 30,000: the
    copy must not pass the DLQ's limit by it."""
    limit = 100_000
    router = FailureRouter.for_stage(
        SETTINGS.model_copy(update={"claimx_dlq_max_message_bytes": limit}),
        "ingest",
        SETTINGS.claimx_events_dlq_topic,
    )
    source = KafkaRecord("claimx.events.raw", 0, 7, None, b"k", b"not json", [("😀" * 30_000, b"")])
    copy = router.route(
        source, reason="bad", error_class="MalformedMessageError", category=ErrorCategory.PERMANENT
    )
    wire = sum(len(n.encode()) + len(d) for n, d in copy.headers or [])
    assert wire + len(copy.value or b"") + len(copy.key or b"") <= limit
    assert dict(copy.headers or [])["claimx.dropped_headers"] == b"1"


def test_a_routed_or_replayed_media_message_gets_its_url_refreshes_back() -> None:
    """Refreshes of a presigned URL are bounded per attempt. Found in audit: a cached message
    carries the count its download reached (here the bound, 2); a failed upload sent it back
    through the retry tiers with that count, and so did a replay, so a link that expired while
    it waited was never refreshed again, on every tier to the DLQ and on every replay."""
    refreshed = TASK.model_copy(update={"refresh_count": 2}).to_json()
    upload = FailureRouter.for_stage(
        SETTINGS, "upload", SETTINGS.claimx_downloads_dlq_topic, download_ladder(SETTINGS)
    )
    routed = fail(upload, record(refreshed), ErrorCategory.TRANSIENT)[-1]
    assert routed.topic == SETTINGS.download_retry_topics[0]
    back = DownloadTask.from_json(routed.value or b"")
    assert (back.retry_count, back.refresh_count) == (1, 0)
    replayed = DownloadTask.from_json(replayed_value(DlqName.DOWNLOAD, refreshed) or b"")
    assert (replayed.retry_count, replayed.refresh_count) == (0, 0)
    assert for_attempt(TASK.to_json(), 3) == TASK.to_json().replace(
        b'"retry_count":0', b'"retry_count":3'
    )  # a count of 0 stays as it was written


@given(
    reason=st.lists(st.characters() | st.characters(categories=["Cs"])).map("".join),
    category=st.sampled_from(list(ErrorCategory)),
)
def test_any_reason_text_routes_and_its_result_says_what_the_headers_say(
    reason: str, category: ErrorCategory
) -> None:
    """A reason is a peer's text: an HTTP header aiohttp decoded with surrogate escapes (lone
    surrogates, which UTF-8 cannot encode), an exception's message. Whatever it holds, the copy
    and its failed result are made: a failure here escaped the stage's per-item handling and
    failed the step on every replay."""
    routed = download_router().route_media(
        record(TASK.to_json()),
        TASK,
        SETTINGS.claimx_downloads_results_topic,
        reason=reason,
        error_class="DownloadError",
        category=category,
    )
    info = FailureInfo.from_headers(routed[-1].headers)
    info.error_message.encode("utf-8")
    if routed[-1].topic == SETTINGS.claimx_downloads_dlq_topic:
        result = UploadResult.from_json(routed[0].value)
        assert result.error == info.error_message


@pytest.mark.parametrize("max_retries", [0, 4])
@pytest.mark.parametrize("before", [None, 0, 1, 4])
def test_a_failure_that_spends_no_attempt_waits_in_the_tier_of_its_attempts(
    before: int | None, max_retries: int
) -> None:
    """A stage that stopped before it got to a task: the task keeps its attempt count (none,
    or 0 after a DLQ replay: the first tier), and never reaches the DLQ for it, even on its
    last try or with no retries at all."""
    settings = SETTINGS.model_copy(update={"max_retries": max_retries})
    router = FailureRouter.for_stage(
        settings, "enrich", settings.claimx_enrichment_dlq_topic, enrichment_ladder(settings)
    )
    task = EnrichmentTask(
        event_id="e1", event_type="PROJECT_CREATED", project_id="7", ingested_at="2026-12-07T00:00Z"
    )
    headers: list[tuple[str, bytes]] = []
    if before is not None:
        earlier = FailureInfo.from_headers(
            router.route(
                KafkaRecord("p", 0, 1, None, b"7", task.to_json(), []),
                reason="HTTP 503",
                error_class="ClaimXApiError",
                category=ErrorCategory.TRANSIENT,
            ).headers
        ).model_copy(update={"attempt": before})
        headers = [(k, v or b"") for k, v in earlier.to_headers()]
    rec = KafkaRecord("p", 0, 2, None, b"7", task.to_json(), headers)
    routed = router.route(
        rec,
        reason="the stage stopped before this task's turn",
        error_class="Stopping",
        category=ErrorCategory.TRANSIENT,
        spend_attempt=False,
    )
    kept = before or 0
    assert FailureInfo.from_headers(routed.headers).attempt == kept
    assert json.loads(routed.value)["retry_count"] == kept
    tiers = settings.enrichment_retry_topics
    assert routed.topic == tiers[min(max(kept, 1), len(tiers)) - 1]
