"""The routing ledger's boundary: what a start reads from the topics it routes to.

A stage's start reads its tiers, its DLQ, (a media stage) the results topic and (the download
stage) its cached topic, which any producer can write to, to find what a crashed run already
routed or downloaded (``routing/ledger.py``). Hypothesis fills the download stage's tiers, DLQ,
results and cached topics with junk: any key, value and headers, ``claimx.read_at`` naming
nothing, another topic, or one of the stage's own unread tasks under another key, values that
are those tasks, failed and completed results for them. Beside the junk, some tasks get a
genuine copy, as a crashed run would have left it: in a tier, in the DLQ with its failed
result, in the DLQ with the result lost, or their cached message. The group's position is
published at the start of the input, with a snapshot time, so the start reads all of it.

Then ``python -m bytewax.run dataflows.download`` runs until its input is drained, and every
task must be exactly where it belongs, whatever the junk said: one with a genuine copy read past
(not downloaded again, not routed again, a failed result beside each DLQ copy), every other
downloaded once. The process must end by itself with 0.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.catalog import STAGES
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.models import CachedFile, DownloadTask, MalformedMessageError, UploadResult
from claimx_flow.routing.failures import (
    ORIGINAL_KEY_SHA256_HEADER,
    READ_AT_HEADER,
    FailureRouter,
)
from claimx_flow.routing.tiers import download_ladder
from claimx_flow.stages.download import cached_headers
from tests.isolation import isolated_settings
from tests.poison.checks import Findings
from tests.poison.harness import Read, poison_settings, read_topic, run_stage_process, runs_within
from tests.poison.strategies import header_names, header_values, hostile_envelopes, keys
from tests.procedures.test_routed_once import MediaHost
from tests.procedures.test_routed_once import tasks as media_tasks
from tests.retry.test_ledger import publish
from tests.stages.download_runs import produce

TASKS = 10
Route = str  # "tier", "dlq" (with its failed result), "dlq, result lost" or "downloaded"
ROUTES: list[Route] = ["tier", "dlq", "dlq, result lost", "downloaded"]


@dataclass(frozen=True)
class Junk:
    """One record for a route topic: ``topic`` is "tier", "dlq", "results" or "cached"."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Placed:
    """A task as produced: where the stage reads it."""

    task: DownloadTask
    record: KafkaRecord

    @property
    def read_at(self) -> bytes:
        return f"{self.record.partition}:{self.record.offset}:{self.record.topic}".encode()


# Positions as ``claimx.read_at`` spells them, filled in with the real ones in the test.
_positions = st.one_of(
    st.binary(max_size=40),
    st.tuples(
        st.integers(-3, 4), st.integers(-(2**63), 2**63), st.sampled_from(["other.topic", ""])
    ).map(lambda p: f"{p[0]}:{p[1]}:{p[2]}".encode()),
    st.sampled_from([b":", b"0:", b"0:0", b"0:0:", b"x:1:t", b"1:\xff:t", "0:1:é".encode()]),
)


@st.composite
def junk(draw: st.DrawFn, placed: list[Placed]) -> Junk:
    """A record no stage of ours wrote as it stands, aimed at the ledger's reading."""
    task = draw(st.sampled_from(placed))
    topic = draw(st.sampled_from(["tier", "dlq", "dlq", "results", "cached"]))
    value = draw(
        st.one_of(
            st.none(),
            st.binary(max_size=80),
            st.just(task.task.to_json()),
            st.sampled_from(["failed", "completed"]).map(
                lambda status: result_of(task.task, status).to_json()
            ),
            st.just(json.dumps({"media_id": task.task.media_id, "status": "failed"}).encode()),
        )
    )
    headers = draw(
        st.one_of(
            st.lists(st.tuples(header_names, header_values), max_size=4),
            hostile_envelopes(),
        )
    )
    source = task.record.topic
    read_at = draw(
        st.one_of(
            st.none(),
            _positions,
            st.tuples(  # the stage's input, at a partition it has not
                st.sampled_from([-1, 2, 99, 2**31, 2**63]), st.integers(-1, TASKS)
            ).map(lambda p: f"{p[0]}:{p[1]}:{source}".encode()),
            st.just(task.read_at),  # names a real task: under any key but its own
            st.sampled_from(placed).map(lambda other: other.read_at),
        )
    )
    if read_at is not None:
        headers = [*headers, (READ_AT_HEADER, read_at)]
    if draw(st.booleans()):
        headers = [*headers, (ORIGINAL_KEY_SHA256_HEADER, draw(st.binary(max_size=64)))]
    key = draw(st.one_of(keys, st.sampled_from([p.record.key for p in placed])))
    named = next((p for p in placed if p.read_at == read_at), None)
    if named is not None and key == named.record.key:
        key = (key or b"") + b"/not-its-key"  # with its own key, it would be a genuine copy
    return Junk(topic, key, value, headers)


def result_of(task: DownloadTask, status: str) -> UploadResult:
    failed = UploadResult.failed(task, None, "junk")
    return failed if status == "failed" else failed.model_copy(update={"status": "completed"})


@pytest.fixture(scope="module")
def media_host() -> Iterator[MediaHost]:
    host = MediaHost()
    host.restored.set()
    yield host
    host.close()


def place(settings: Settings, tasks: list[DownloadTask]) -> list[Placed]:
    produce(settings, tasks)
    by_media = {t.media_id: t for t in tasks}
    placed: list[Placed] = []
    for read in read_topic(settings, settings.claimx_downloads_pending_topic):
        task = by_media[DownloadTask.from_json(read.value).media_id]
        placed.append(
            Placed(
                task,
                KafkaRecord(read.topic, read.partition, read.offset, None, read.key, read.value),
            )
        )
    return placed


def genuine_copies(
    settings: Settings, routed: dict[int, Route], placed: list[Placed]
) -> list[Junk]:
    """What a crashed run left for each routed task: its copy, and (but for one whose result
    was lost) its failed result; or, for one it downloaded, the cached message."""
    router = FailureRouter.for_stage(
        settings, "download", settings.claimx_downloads_dlq_topic, download_ladder(settings)
    )
    out: list[Junk] = []
    for index, route in routed.items():
        task = placed[index]
        if route == "downloaded":
            file = CachedFile("/cache/gone.bin", 1, "0" * 64, "image/jpeg", datetime.now(UTC))
            value = file.message(task.task)
            out.append(Junk("cached", task.record.key, value, cached_headers(task.record)))
            continue
        category = ErrorCategory.TRANSIENT if route == "tier" else ErrorCategory.PERMANENT
        copy = router.route(
            task.record, reason="HTTP 404: gone", error_class="DownloadError", category=category
        )
        assert (route == "tier") == (copy.topic != settings.claimx_downloads_dlq_topic)
        out.append(
            Junk("tier" if route == "tier" else "dlq", copy.key, copy.value, list(copy.headers))
        )
        if route == "dlq":
            result = UploadResult.failed(task.task, None, "HTTP 404: gone")
            out.append(Junk("results", result.kafka_key, result.to_json(), []))
    return out


def send(settings: Settings, records: list[Junk]) -> None:
    topics = {
        "tier": settings.download_retry_topics[0],
        "dlq": settings.claimx_downloads_dlq_topic,
        "results": settings.claimx_downloads_results_topic,
        "cached": settings.claimx_downloads_cached_topic,
    }
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "linger.ms": 5})
    for record in records:
        producer.produce(
            topics[record.topic], key=record.key, value=record.value, headers=record.headers
        )
    assert producer.flush(30) == 0


def results(reads: list[Read]) -> list[UploadResult]:
    found: list[UploadResult] = []
    for read in reads:
        try:
            found.append(UploadResult.from_json(read.value))
        except MalformedMessageError:
            continue
    return found


@runs_within(180)
@poison_settings
@given(data=st.data())
def test_junk_in_the_route_topics_makes_a_start_read_past_only_genuine_copies(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    media_host: MediaHost,
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    tmp = tmp_path_factory.mktemp("ledger-poison")
    settings = isolated_settings(kafka_bootstrap, tmp / "data", sim=sim, cache_dir=tmp / "cache")
    tasks = media_tasks(media_host, f"ok-{uuid.uuid4().hex[:6]}", TASKS)
    placed = place(settings, tasks)
    routed: dict[int, Route] = data.draw(
        st.dictionaries(st.integers(0, TASKS - 1), st.sampled_from(ROUTES), max_size=4),
        label="routed",
    )
    junks = data.draw(st.lists(junk(placed), max_size=40), label="junk")
    genuine = genuine_copies(settings, routed, placed)
    records = data.draw(st.permutations([*junks, *genuine]), label="order")
    send(settings, records)
    group = settings.consumer_group(STAGES["download"].consumer)
    partitions = {p.record.partition for p in placed}
    publish(settings, group, placed[0].record.topic, dict.fromkeys(partitions, 0), time.time() - 5)

    findings = Findings("ledger boundary")
    findings.stage_ran(run_stage_process(settings, "download", tmp / "logs", timeout_s=150))

    sent_cached = Counter(record.value for record in records if record.topic == "cached")
    cached: Counter[str] = Counter()
    for read in read_topic(settings, settings.claimx_downloads_cached_topic):
        if sent_cached[read.value]:  # one of those sent before the start
            sent_cached[read.value] -= 1
            continue
        cached[json.loads(read.value or b"{}").get("media_id")] += 1
    for index, item in enumerate(placed):
        media = item.task.media_id
        expected = 0 if index in routed else 1
        if cached[media] != expected:
            what = f"routed to {routed[index]} before the start" if index in routed else "unrouted"
            findings.add(f"[{media}] {what}: downloaded {cached[media]} time(s), not {expected}")

    dlq = read_topic(settings, settings.claimx_downloads_dlq_topic)
    tier = read_topic(settings, settings.download_retry_topics[0])
    sent = Counter(record.topic for record in records)  # ("downloaded" is in neither)
    if len(dlq) != sent["dlq"] or len(tier) != sent["tier"]:
        findings.add(
            f"routed again: {len(dlq)} DLQ and {len(tier)} tier records, "
            f"{sent['dlq']} and {sent['tier']} sent before the start"
        )
    junk_results = {record.value for record in records if record.topic == "results"}
    written = results(
        [
            r
            for r in read_topic(settings, settings.claimx_downloads_results_topic)
            if r.value not in junk_results
        ]
    )
    failed_now = Counter(r.media_id for r in written if r.status == "failed")
    failed_any = failed_now + Counter(
        r.media_id
        for r in results([Read("", 0, 0, None, v, [], 0) for v in junk_results])
        if r.status == "failed"
    )
    for index, item in enumerate(placed):
        media = item.task.media_id
        if routed.get(index, "tier") in ("dlq", "dlq, result lost") and not failed_any[media]:
            findings.add(f"[{media}] dead-lettered before the start, with no failed result")
        if index not in routed and failed_now[media]:
            findings.add(f"[{media}] downloaded, and given a failed result at the start")
        if failed_now[media] > 1:
            findings.add(f"[{media}] {failed_now[media]} failed results sent again")
    findings.check()
