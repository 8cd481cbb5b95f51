"""``claimx dlq replay`` on a real broker: what goes where, which records, once, and not forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer

from claimx_flow.dlq.queues import DlqName, replay_target
from claimx_flow.dlq.replay import ReplayOptions, ReplayRun, replay
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.models import FailureInfo
from claimx_flow.routing.failures import FailureRouter
from tests.dlq.crash_replay import CRASH_EXIT_CODE
from tests.dlq.helpers import (
    Pipeline,
    claimx,
    failure,
    hour,
    put,
    put_letters,
    read_all,
    task_value,
    watermarks,
    zulu,
)

REPO = Path(__file__).resolve().parents[2]


def _letters(pipeline: Pipeline, n: int, **kwargs: object) -> list[FailureInfo]:
    infos = [
        failure(f"evt_{i}", origin_topic=pipeline["enrichment.pending"], **kwargs)  # type: ignore[arg-type]
        for i in range(n)
    ]
    put_letters(pipeline, "enrichment.dlq", infos)
    return infos


def test_replay_keeps_key_and_value_restarts_attempts_and_counts_the_replay(
    pipeline: Pipeline,
) -> None:
    _letters(pipeline, 3, attempt=4)

    result = claimx(pipeline, "replay", "enrichment")

    assert result.exit_code == 0, result.output
    assert "replayed" in result.output
    replayed = read_all(pipeline.bootstrap, pipeline["enrichment.pending"])
    assert sorted(r.value for r in replayed) == [task_value(f"evt_{i}") for i in range(3)]
    for record in replayed:
        assert record.key == b"p1"
        info = FailureInfo.from_headers(list(record.headers.items()))
        assert info.attempt == 0
        assert info.replay_count == 1
        assert info.due_at is None
        assert info.original_topic == pipeline["enrichment.pending"]
        assert info.error_class == "ClaimxApiError"  # the reason stays for whoever looks later
        assert record.header("claimx.replayed_at")
        assert record.header("claimx.replayed_from").startswith(pipeline["enrichment.dlq"])
        assert record.header("trace-id") == "t-" + info.event_id  # foreign headers kept
    # A replay does not remove records from the DLQ (purge does).
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])) == 3


FILTER_CASES: list[tuple[list[str], int]] = [
    (["--event-ids", "evt_1, evt_4"], 2),
    (["--media-ids", "m2,m3"], 2),
    (["--project-id", "p2"], 2),
    (["--category", "auth,permanent"], 3),
    (["--error-contains", "404 not FOUND"], 1),
    (["--since", zulu(hour(3))], 4),
    (["--until", hour(3).isoformat()], 2),
    (["--since", f"{hour(2):%Y-%m-%dT%H:%M}", "--until", f"{hour(3):%Y-%m-%dT%H:30}"], 2),
    (["--event-type", "MEDIA_ADDED"], 0),
    (["--project-id", "p1", "--category", "transient"], 2),
]


def test_each_filter_option_selects_its_records(
    pipeline: Pipeline, extra_topic: Callable[[], str]
) -> None:
    """Every option reaches the filter (its logic is in test_filters); one replay really sends."""
    origin = pipeline["enrichment.pending"]
    infos = [
        failure("evt_0", origin_topic=origin, category=ErrorCategory.PERMANENT),
        failure("evt_1", origin_topic=origin, message="GET /project/1: 404 Not Found"),
        failure("evt_2", origin_topic=origin, error_class="TimeoutError", media_id="m2"),
        failure("evt_3", origin_topic=origin, category=ErrorCategory.AUTH, media_id="m3"),
        failure("evt_4", origin_topic=origin, project_id="p2"),
        failure("evt_5", origin_topic=origin, project_id="p2", category=ErrorCategory.PERMANENT),
    ]
    put_letters(pipeline, "enrichment.dlq", infos, timestamps=[hour(i + 1) for i in range(6)])

    for args, count in FILTER_CASES:
        result = claimx(pipeline, "replay", "enrichment", "--dry-run", "--json", *args)
        summary = json.loads(result.output)
        assert (summary["replayed"], summary["skipped_by_filter"]) == (count, 6 - count), args
        assert result.exit_code == (0 if count else 1), args

    target = extra_topic()
    result = claimx(pipeline, "replay", "enrichment", "--to", target, "--media-ids", "m2,m3")
    assert result.exit_code == 0, result.output
    arrived = [json.loads(r.value or b"")["event_id"] for r in read_all(pipeline.bootstrap, target)]
    assert sorted(arrived) == ["evt_2", "evt_3"]
    assert watermarks(pipeline.bootstrap, origin) == [(0, 0), (0, 0)]  # --to, not the origin


def test_bad_filter_values_are_usage_errors(pipeline: Pipeline) -> None:
    for args in (["--category", "flaky"], ["--since", "yesterday"], ["--max", "0"]):
        result = claimx(pipeline, "replay", "enrichment", *args)
        assert result.exit_code == 2, (args, result.output)


def test_dry_run_sends_nothing_and_shows_a_histogram(pipeline: Pipeline) -> None:
    origin = pipeline["enrichment.pending"]
    infos = [failure(f"evt_{i}", origin_topic=origin) for i in range(3)]
    infos.append(
        failure(
            "evt_9",
            origin_topic=origin,
            category=ErrorCategory.PERMANENT,
            error_class="ValueError",
            message="bad payload",
        )
    )
    put_letters(pipeline, "enrichment.dlq", infos)

    dry = claimx(pipeline, "replay", "enrichment", "--dry-run")

    assert dry.exit_code == 0, dry.output
    assert "would replay" in dry.output
    assert "█" in dry.output
    assert "transient" in dry.output and "permanent" in dry.output
    assert "ClaimxApiError: API call failed: 500 Internal Server Error" in dry.output
    assert "ValueError: bad payload" in dry.output
    assert watermarks(pipeline.bootstrap, origin) == [(0, 0), (0, 0)]
    as_json = json.loads(claimx(pipeline, "replay", "enrichment", "--dry-run", "--json").output)
    assert as_json["dry_run"] is True
    assert as_json["replayed"] == 4
    assert as_json["by_category"] == {"transient": 3, "permanent": 1}
    # A dry run moves no progress: the real replay that follows sends all four.
    assert json.loads(claimx(pipeline, "replay", "enrichment", "--json").output)["replayed"] == 4
    assert len(read_all(pipeline.bootstrap, origin)) == 4


def test_target_is_the_original_input_topic_or_the_dlq_pending_topic(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    tier = settings.enrichment_retry_topics[1]
    from_tier = failure("e", origin_topic=tier)
    from_cache = failure("e", origin_topic=settings.claimx_downloads_cached_topic, stage="upload")
    from_raw = failure("e", origin_topic=pipeline["events"], stage="ingest")

    assert replay_target(settings, DlqName.ENRICHMENT, from_tier) == pipeline["enrichment.pending"]
    assert replay_target(settings, DlqName.DOWNLOAD, from_cache) == pipeline["downloads.pending"]
    assert replay_target(settings, DlqName.EVENTS, from_raw) == pipeline["events"]
    assert replay_target(settings, DlqName.DOWNLOAD, None) == pipeline["downloads.pending"]

    # Through Kafka: an upload failure goes back to be downloaded again.
    put_letters(pipeline, "downloads.dlq", [from_cache])
    assert claimx(pipeline, "replay", "download").exit_code == 0
    assert len(read_all(pipeline.bootstrap, pipeline["downloads.pending"])) == 1


def test_replay_resumes_after_max_and_never_sends_twice(pipeline: Pipeline) -> None:
    _letters(pipeline, 10)
    replayed = []
    for _ in range(3):
        result = claimx(pipeline, "replay", "enrichment", "--max", "4", "--json")
        assert result.exit_code == 0, result.output
        replayed.append(json.loads(result.output)["replayed"])
    last = claimx(pipeline, "replay", "enrichment", "--max", "4", "--json")

    assert replayed == [4, 4, 2]
    assert last.exit_code == 1  # nothing left to replay in this session
    assert json.loads(last.output)["replayed"] == 0
    values = Counter(r.value for r in read_all(pipeline.bootstrap, pipeline["enrichment.pending"]))
    assert sorted(values) == sorted(task_value(f"evt_{i}") for i in range(10))
    assert set(values.values()) == {1}


def test_without_transactions_a_replay_still_resumes_without_duplicates(pipeline: Pipeline) -> None:
    _letters(pipeline, 5)
    counts = []
    for _ in range(3):
        result = claimx(
            pipeline, "replay", "enrichment", "--no-transactions", "--max", "2", "--json"
        )
        counts.append(json.loads(result.output)["replayed"])
    assert counts == [2, 2, 1]
    seen = Counter(r.value for r in read_all(pipeline.bootstrap, pipeline["enrichment.pending"]))
    assert len(seen) == 5 and set(seen.values()) == {1}


def test_ctrl_c_without_transactions_commits_what_was_sent(pipeline: Pipeline) -> None:
    """Nothing takes a send back without a transaction: an interrupted run confirms and commits
    the sends it queued, so the next run sends only the rest."""
    _letters(pipeline, 8)

    def ctrl_c(read: int, _total: int) -> None:
        if read == 3:
            raise KeyboardInterrupt

    options = ReplayOptions(transactional=False)
    first = replay(pipeline.settings, DlqName.ENRICHMENT, options, progress=ctrl_c)
    rest = claimx(pipeline, "replay", "enrichment", "--no-transactions", "--json")

    assert rest.exit_code == 0, rest.output
    seen = Counter(r.value for r in read_all(pipeline.bootstrap, pipeline["enrichment.pending"]))
    assert sorted(seen) == sorted(task_value(f"evt_{i}") for i in range(8))
    assert set(seen.values()) == {1}, seen
    assert first.interrupted and first.done.replayed == 3
    assert json.loads(rest.stdout)["replayed"] == 5


def test_a_ctrl_c_right_after_a_send_is_queued_sends_it_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT delivered the moment the third send is queued, before its position is
    recorded: taken there, the stop confirmed the send but did not commit past it, and the
    next run sent it again. (The real producer and broker; the wrapper only times the signal,
    which no outside sender can land in that window reliably.)"""
    _letters(pipeline, 8)
    real_start = ReplayRun._start_producer

    class SignalOnThirdSend:
        def __init__(self, producer: Any) -> None:
            self.producer, self.sends = producer, 0

        def produce(self, *args: Any, **kwargs: Any) -> None:
            self.producer.produce(*args, **kwargs)
            self.sends += 1
            if self.sends == 3:
                os.kill(os.getpid(), signal.SIGINT)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.producer, name)

    monkeypatch.setattr(
        ReplayRun, "_start_producer", lambda run, tx: SignalOnThirdSend(real_start(run, tx))
    )
    first = replay(pipeline.settings, DlqName.ENRICHMENT, ReplayOptions(transactional=False))
    monkeypatch.undo()
    rest = replay(pipeline.settings, DlqName.ENRICHMENT, ReplayOptions(transactional=False))

    assert first.interrupted and first.done.replayed == 3
    assert rest.done.replayed == 5
    seen = Counter(r.value for r in read_all(pipeline.bootstrap, pipeline["enrichment.pending"]))
    assert sorted(seen) == sorted(task_value(f"evt_{i}") for i in range(8))
    assert set(seen.values()) == {1}, seen


def test_a_crash_between_confirmed_sends_and_commit_duplicates_nothing(pipeline: Pipeline) -> None:
    _letters(pipeline, 8)
    crash = subprocess.run(
        [sys.executable, "-m", "tests.dlq.crash_replay"],
        env={**os.environ, **pipeline.env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crash.returncode == CRASH_EXIT_CODE, crash.stderr
    # The first chunk really reached the topic: Kafka confirmed it before the process died.
    uncommitted = read_all(pipeline.bootstrap, pipeline["enrichment.pending"], committed_only=False)
    assert len(uncommitted) == 5

    outcome = replay(pipeline.settings, DlqName.ENRICHMENT, ReplayOptions(chunk_size=5))

    assert outcome.done.replayed == 8  # the open chunk was aborted and is sent again
    seen = Counter(r.value for r in read_all(pipeline.bootstrap, pipeline["enrichment.pending"]))
    assert sorted(seen) == sorted(task_value(f"evt_{i}") for i in range(8))
    assert set(seen.values()) == {1}  # a read-committed reader (every stage) sees each once
    again = replay(pipeline.settings, DlqName.ENRICHMENT, ReplayOptions(chunk_size=5))
    assert again.done.replayed == 0


def test_records_replayed_too_often_are_parked_not_looped(pipeline: Pipeline) -> None:
    origin = pipeline["enrichment.pending"]
    infos = [
        failure("evt_fresh", origin_topic=origin, replay_count=0),
        failure("evt_twice", origin_topic=origin, replay_count=2),
        failure("evt_thrice", origin_topic=origin, replay_count=3),
    ]
    put_letters(pipeline, "enrichment.dlq", infos)

    result = claimx(pipeline, "replay", "enrichment", "--json")

    summary = json.loads(result.output)
    assert result.exit_code == 1  # partial: something was parked
    assert (summary["replayed"], summary["parked"]) == (2, 1)
    assert summary["parked_records"][0]["event_id"] == "evt_thrice"
    assert summary["parked_records"][0]["replay_count"] == 3
    arrived = {json.loads(r.value or b"")["event_id"] for r in read_all(pipeline.bootstrap, origin)}
    assert arrived == {"evt_fresh", "evt_twice"}
    assert len(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])) == 3  # kept in the DLQ
    table = claimx(pipeline, "replay", "enrichment", "--dry-run", "--session", "look")
    assert "parked" in table.output and "evt_thrice" in table.output
    # An operator who decides otherwise raises the limit for that record.
    forced = claimx(
        pipeline,
        "replay",
        "enrichment",
        "--event-ids",
        "evt_thrice",
        "--max-replays",
        "5",
        "--json",
    )
    assert json.loads(forced.output)["replayed"] == 1


def test_a_message_that_keeps_failing_is_parked_after_three_replays(pipeline: Pipeline) -> None:
    """Replay → the stage fails it again (through the real FailureRouter) → back in the DLQ."""
    _letters(pipeline, 1)
    router = FailureRouter(stage="enrich", dlq_topic=pipeline["enrichment.dlq"])
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    consumer = Consumer(
        {
            "bootstrap.servers": pipeline.bootstrap,
            "group.id": "stage-" + pipeline.prefix,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([pipeline["enrichment.pending"]])
    outcomes = []
    try:
        for _ in range(4):
            outcomes.append(json.loads(claimx(pipeline, "replay", "enrichment", "--json").output))
            if outcomes[-1]["replayed"] == 0:
                break
            message = _one(consumer)
            record = KafkaRecord(
                message.topic() or "",
                message.partition() or 0,
                message.offset() or 0,
                None,
                message.key(),
                message.value(),
                list(message.headers() or []),  # type: ignore[arg-type]
            )
            failed = router.route(
                record,
                reason="still 500",
                error_class="ClaimxApiError",
                category=ErrorCategory.PERMANENT,
            )
            producer.produce(failed.topic, failed.value, failed.key, headers=failed.headers)
            assert producer.flush(10) == 0
    finally:
        consumer.close()

    assert [o["replayed"] for o in outcomes] == [1, 1, 1, 0]
    assert outcomes[-1]["parked_records"][0]["replay_count"] == 3
    latest = FailureInfo.from_headers(
        list(read_all(pipeline.bootstrap, pipeline["enrichment.dlq"])[-1].headers.items())
    )
    assert latest.replay_count == 3


def _one(consumer: Consumer) -> Message:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            return message
    raise AssertionError("no replayed message arrived")


def test_rate_limit_spaces_the_sends(pipeline: Pipeline) -> None:
    _letters(pipeline, 6)
    started = time.monotonic()
    result = claimx(pipeline, "replay", "enrichment", "--rate", "20")
    assert result.exit_code == 0
    assert time.monotonic() - started >= 5 / 20


def test_undecodable_values_and_keys_are_replayed_byte_for_byte(pipeline: Pipeline) -> None:
    info = failure("evt_bin", origin_topic=pipeline["enrichment.pending"])
    blob = bytes(range(256))
    put(pipeline.bootstrap, pipeline["enrichment.dlq"], [(b"\xff\xfe", blob, info.to_headers())])
    assert claimx(pipeline, "replay", "enrichment").exit_code == 0
    [record] = read_all(pipeline.bootstrap, pipeline["enrichment.pending"])
    assert (record.key, record.value) == (b"\xff\xfe", blob)


def test_a_truncated_copy_is_left_and_listed_not_replayed(pipeline: Pipeline) -> None:
    """A copy the router cut to fit the DLQ cannot be sent back as the original: the replay
    leaves it, lists it, and exits 1 (partial), while the whole copies beside it go."""
    origin = pipeline["enrichment.pending"]
    whole, cut = (failure(e, origin_topic=origin) for e in ("evt_whole", "evt_cut"))
    marks = [("claimx.truncated", b"true"), ("claimx.original_size", b"2000000")]
    put(
        pipeline.bootstrap,
        pipeline["enrichment.dlq"],
        [
            (b"p1", task_value("evt_whole"), whole.to_headers()),
            (b"p1", task_value("evt_cut")[:20], [*cut.to_headers(), *marks]),
        ],
    )
    result = claimx(pipeline, "replay", "enrichment", "--json")
    summary = json.loads(result.output)
    assert result.exit_code == 1
    assert (summary["replayed"], summary["truncated"]) == (1, 1)
    assert summary["truncated_records"][0]["offset"] == 1
    arrived = [json.loads(r.value or b"")["event_id"] for r in read_all(pipeline.bootstrap, origin)]
    assert arrived == ["evt_whole"]
    table = claimx(pipeline, "replay", "enrichment", "--dry-run", "--session", "look")
    assert "truncated copies" in table.output
