"""The media boundary: generated download tasks through real download and upload processes.

Hypothesis makes a batch of download tasks for simulator media: good ones (with any file name
a producer could send), links that are not valid URLs (generated from parts: schemes, hosts,
ports, paths, and the simulator's hostile link kinds), media the simulator answers with a body
cut short, chunked and cut, compressed, empty, HTML, a redirect or an error status (its
``media_bodies`` hostile mode), fields no file can be stored under, and messages that are no
task at all. They are produced to ``claimx.downloads.pending``; ``dataflows.download`` and
then ``dataflows.upload`` each drain their input once (the upload also gets cached-download
messages that no upload can honour: a file outside the cache, one gone, one whose size or
sha256 is not what the message says, and no message at all). Then every media file is uploaded (a
``claimx_attachments`` row, the stored bytes, a result) or in the download DLQ or a download
retry tier with a reason, never both; every good one uploaded with the source's bytes; no
file left in the cache; and both processes ended with 0.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.config import Settings
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.hostile import (
    BODY_KINDS,
    HONEST_BODIES,
    URL_KINDS,
    BodyPoison,
    Hostility,
    UrlPoison,
    media_url,
)
from claimx_flow.media.cache_runs import cached_files
from tests.isolation import isolated_settings
from tests.poison.checks import Findings, check_dead_letter, no_duplicates
from tests.poison.harness import (
    BATCH,
    Placed,
    RawRecord,
    Read,
    poison_settings,
    produce_exact,
    read_topic,
    read_topics,
    run_stage_process,
    runs_within,
    table,
)
from tests.poison.hostile_plans import BAD_BODIES, BAD_URLS
from tests.simulator_fixtures import SIMULATOR_SEED

Expect = Literal["land", "fail", "one"]
FIRST_PROJECT = 7_200_000
MEDIA_BYTES = 64 * 1024


@dataclass(frozen=True)
class MediaTask:
    """One generated message for ``claimx.downloads.pending`` and what must become of it."""

    fields: dict[str, Any] | None
    """The task's JSON fields (None: ``raw`` is no task at all)."""
    expect: Expect
    why: str
    body: BodyPoison | None = None
    raw: bytes | None = None

    @property
    def media_id(self) -> str | None:
        value = (self.fields or {}).get("media_id")
        return str(value) if value is not None else None

    @property
    def value(self) -> bytes | None:
        if self.fields is None:
            return self.raw
        return json.dumps(self.fields).encode()


def signed_url(sim: RunningSimulator, project_id: int, media_id: int) -> str:
    path = f"/media/{project_id}/{media_id}"
    return sim.simulator.signer.sign(sim.origin, path, 3_600_000)


# Strategies -----------------------------------------------------------------------------------

good_names = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60),
    st.sampled_from(
        ["../../etc/passwd", "CON.jpg", "a/b\\c.jpg", "x" * 1000 + ".jpg", "", ".", " .jpg"]
    ),
)
url_parts = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "ftp://", "file://", "", "//", "http:/", "HTTP://"]),
    st.sampled_from(
        ["127.0.0.1", "localhost", "[::1]", "[::1", "169.254.169.254", "example.com", "", "@"]
    ),
    st.one_of(
        st.just(""),
        st.integers(-5, 200_000).map(lambda p: f":{p}"),
        st.sampled_from([":", ":abc", ":8080:9090"]),
    ),
    st.one_of(st.text(max_size=30).map(lambda t: "/" + t), st.just("/media/1/2?sig=x")),
)


@st.composite
def media_tasks(draw: st.DrawFn, sim: RunningSimulator, index: int) -> MediaTask:
    """A good task, a bad link, a bad body, a field no file is stored under, or no task."""
    project_id = FIRST_PROJECT + index
    media_id = draw(st.sampled_from(sim_data.media_ids(SIMULATOR_SEED, project_id)))
    fields: dict[str, Any] = {
        "media_id": str(media_id),
        "project_id": str(project_id),
        "download_url": signed_url(sim, project_id, media_id),
        "file_name": draw(good_names),
        "file_type": sim_data.media_type(SIMULATOR_SEED, media_id),
        "source_event_id": f"evt-{media_id}",
        "retry_count": draw(st.integers(0, 3)),
    }
    kind = draw(
        st.sampled_from(["good", "good", "good", "url", "url", "body", "body", "field", "none"])
    )
    if kind == "good":
        return MediaTask(fields, "land", "good")
    if kind == "url":
        if draw(st.booleans()):
            poison = draw(st.builds(UrlPoison, kind=st.sampled_from(URL_KINDS)))
            url = media_url(
                SIMULATOR_SEED, media_id, fields["download_url"], sim.port, poison, 9000
            )
            fields["download_url"] = url
            expect: Expect = "fail" if poison.kind in BAD_URLS else "one"
            return MediaTask(fields, expect, f"url:{poison.kind} {str(url)[:60]!r}")
        url = draw(url_parts | st.text(max_size=80))
        fields["download_url"] = url
        return MediaTask(fields, "one", f"url {url[:60]!r}")
    if kind == "body":
        body = BodyPoison(kind=draw(st.sampled_from(BODY_KINDS)), variant=draw(st.integers(0, 99)))
        expect = (
            "fail" if body.kind in BAD_BODIES else "land" if body.kind in HONEST_BODIES else "one"
        )
        return MediaTask(fields, expect, f"body:{body.kind}#{body.variant}", body=body)
    if kind == "field":
        field, value = draw(
            st.sampled_from(
                [
                    ("file_type", "exe"),
                    ("file_type", ""),
                    ("file_type", "\ud800"),
                    ("media_id", f"{media_id}_x"),
                    ("media_id", "../" + str(media_id)),
                    ("project_id", "a/b"),
                    ("file_name", "name\ud800.jpg"),
                    ("source_event_id", "e" * 70_000),
                    ("download_url", 12345),
                    ("retry_count", -1),
                    ("media_id", None),
                ]
            )
        )
        fields[field] = value
        return MediaTask(fields, "fail", f"field {field}={str(value)[:30]!r}")
    raw = draw(
        st.sampled_from(
            [b"", b"not json", b"[]", b"null", b'{"media_id": "1"}', b"\xff\xfe", b"[" * 50_000]
        )
    )
    return MediaTask(None, "fail", f"no task {raw[:20]!r}", raw=raw)


@st.composite
def media_batches(draw: st.DrawFn, sim: RunningSimulator) -> list[MediaTask]:
    return [draw(media_tasks(sim, index)) for index in range(BATCH)]


CachedKind = Literal["outside", "missing", "wrong_sha", "wrong_size", "not_json", "dir"]
CACHED_KINDS: tuple[CachedKind, ...] = (
    "outside",
    "missing",
    "wrong_sha",
    "wrong_size",
    "not_json",
    "dir",
)


@dataclass(frozen=True)
class CachedPoison:
    """A ``claimx.downloads.cached`` message no upload can honour: a file outside the cache,
    one that is gone, one whose bytes are not what the message says, no message at all."""

    kind: CachedKind
    media_id: str
    size: int

    def outside(self, settings: Settings) -> Path:
        return settings.effective_cache_dir.parent / "outside" / f"{self.media_id}.bin"

    def message(self, settings: Settings) -> bytes:
        """The message; writes the cache file it names where it is to exist."""
        cache = settings.effective_cache_dir
        cache.mkdir(parents=True, exist_ok=True)
        content = bytes(range(256)) * (self.size // 256 + 1)
        content = content[: self.size]
        local = cache / f"{self.media_id}.0123456789abcdef.bin"
        if self.kind == "not_json":
            return b'{"media_id": "' + self.media_id.encode() + b'", "local_path": '
        if self.kind == "outside":  # a file of the test's own, beside the cache
            local = self.outside(settings)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(content)
        elif self.kind == "dir":
            local = cache
        elif self.kind != "missing":
            local.write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        fields = {
            "media_id": self.media_id,
            "project_id": str(FIRST_PROJECT + 999),
            "download_url": "http://127.0.0.1/media/x",
            "file_name": f"IMG_{self.media_id}.jpg",
            "file_type": "jpg",
            "source_event_id": f"evt-{self.media_id}",
            "local_path": str(local),
            "bytes": self.size + (7 if self.kind == "wrong_size" else 0),
            "sha256": hashlib.sha256(b"other").hexdigest() if self.kind == "wrong_sha" else digest,
            "content_type": "image/jpeg",
            "downloaded_at": "2024-03-01T10:00:00+00:00",
        }
        return json.dumps(fields).encode()


cached_poisons = st.lists(
    st.builds(
        CachedPoison,
        kind=st.sampled_from(CACHED_KINDS),
        media_id=st.integers(10**9, 10**10).map(str),
        size=st.integers(0, 70_000),
    ),
    min_size=3,
    max_size=6,
    unique_by=lambda poison: poison.media_id,
)


# The run and its checks -------------------------------------------------------------------------


def media_settings(kafka_bootstrap: str, sim: RunningSimulator, tmp: Path) -> Settings:
    return isolated_settings(
        kafka_bootstrap,
        tmp / "data",
        sim=sim,
        cache_dir=tmp / "cache",
        # A trickled body takes 1.5-2 s alone and about twice that on a busy runner; here it has
        # one attempt (no retry stage runs), so the deadline leaves room to spare.
        download_timeout_seconds=30,
        claimx_api_breaker_failures=100_000,
    )


def media_of(read: Read) -> str | None:
    """The media id a failure record is about (its value, else its headers)."""
    try:
        value = json.loads(read.value or b"")
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict) and isinstance(value.get("media_id"), str | int):
        return str(value["media_id"])
    info = read.failure()
    return info.media_id if info else None


def check_media(
    settings: Settings,
    tasks: list[MediaTask],
    placed: list[Placed],
    findings: Findings,
    others: frozenset[str] = frozenset(),
) -> None:
    """The law for ``tasks``; failures of media in ``others`` are another check's."""
    rows = table(settings, "claimx_attachments")
    no_duplicates(findings, "claimx_attachments", [r["media_id"] for r in rows])
    uploaded = {row["media_id"]: row for row in rows}
    results = defaultdict(list)
    for read in read_topic(settings, settings.claimx_downloads_results_topic):
        result = json.loads(read.value or b"{}")
        results[str(result.get("media_id"))].append(result)
    dead = read_topic(settings, settings.claimx_downloads_dlq_topic)
    tiers = read_topics(settings, settings.download_retry_topics)
    failed: dict[str, list[Read]] = defaultdict(list)
    by_offset: dict[int, list[Read]] = defaultdict(list)
    pending = settings.claimx_downloads_pending_topic
    cached_topic = settings.claimx_downloads_cached_topic
    for read in [*dead, *tiers]:  # by where the message was first read, else by media id
        info = read.failure()
        about = media_of(read)
        if about in others or (
            about is None and info is not None and info.original_topic == cached_topic
        ):
            continue  # a hostile cached message's: check_cached_poison looks at those
        if info is not None and info.original_topic == pending:
            by_offset[info.original_offset].append(read)
        else:
            failed[media_of(read) or "?"].append(read)
    for task, at in zip(tasks, placed, strict=True):
        record = at.record
        letters = by_offset.pop(at.offset, [])
        if task.fields is None or task.media_id is None:
            if len(letters) != 1:
                findings.add(f"[{task.why}] no task: {len(letters)} failure records", record)
            for letter in letters:
                check_dead_letter(findings, letter, record, stage="download")
            continue
        media_id = task.media_id
        letters += failed.pop(media_id, [])
        row = uploaded.pop(media_id, None)
        where = [
            f"{r.topic.rsplit('.', 1)[-1]}: {r.header('claimx.error_message')}" for r in letters
        ]
        for letter in letters:
            info = letter.failure()
            if info is None or not info.error_message.strip():
                findings.add(f"[{task.why}] {media_id}: failure without a reason", record)
        if row is not None and letters:
            findings.add(f"[{task.why}] {media_id}: both uploaded and failed {where}", record)
        elif row is None and not letters:
            findings.add(f"[{task.why}] {media_id}: neither uploaded nor failed", record)
        elif task.expect == "land" and row is None:
            findings.add(f"[{task.why}] {media_id}: a good file was not uploaded: {where}", record)
        elif task.expect == "fail" and row is not None:
            findings.add(f"[{task.why}] {media_id}: a poisoned file was uploaded", record)
        kind = task.why.split(" ")[0].split("#")[0]
        findings.saw(kind, "uploaded" if row else "/".join(r.topic[-8:] for r in letters))
        if len(letters) > 1:
            findings.add(f"[{task.why}] {media_id}: {len(letters)} failure records", record)
        if row is not None:
            check_upload(findings, settings, task, row, results.pop(media_id, []))
    for media_id in uploaded:
        findings.add(f"claimx_attachments row for media {media_id} that no task asked for")
    for key, strays in [*failed.items(), *by_offset.items()]:
        findings.add(f"{len(strays)} failure record(s) for {key!r} that no task explains")
    leftovers = cached_files(settings.effective_cache_dir)
    if leftovers:
        findings.add(f"{len(leftovers)} file(s) left in the cache, e.g. {leftovers[0].name}")


def check_upload(
    findings: Findings,
    settings: Settings,
    task: MediaTask,
    row: dict[str, Any],
    results: list[dict[str, Any]],
) -> None:
    """An uploaded file: its stored bytes are its row's, a good file's are the source's, and
    one result says it completed."""
    media_id = task.media_id or ""
    stored = Path(str(row["onelake_path"]).removeprefix("file://"))
    if not stored.is_relative_to(settings.files_dir.resolve()) or not stored.exists():
        findings.add(f"[{task.why}] {media_id}: stored file {stored} missing or outside the store")
        return
    content = stored.read_bytes()
    if len(content) != row["bytes"] or hashlib.sha256(content).hexdigest() != row["sha256"]:
        findings.add(f"[{task.why}] {media_id}: stored file differs from its row")
    if task.expect == "land":
        expected = sim_data.media_content(SIMULATOR_SEED, int(media_id), MEDIA_BYTES)
        if content != expected:
            findings.add(f"[{task.why}] {media_id}: stored bytes differ from the source")
    if [r.get("status") for r in results] != ["completed"]:
        findings.add(f"[{task.why}] {media_id}: results {[r.get('status') for r in results]}")


def media_hostility(tasks: list[MediaTask]) -> Hostility:
    return Hostility(media_bodies={t.media_id: t.body for t in tasks if t.body and t.media_id})


def check_cached_poison(
    settings: Settings, poisons: list[CachedPoison], placed: list[Placed], findings: Findings
) -> None:
    """Each hostile cached message: failed (a download retry tier or the DLQ) with a reason,
    never uploaded, its cache file released."""
    uploaded = {row["media_id"] for row in table(settings, "claimx_attachments")}
    cached = settings.claimx_downloads_cached_topic
    failures: dict[int, list[Read]] = defaultdict(list)
    for read in [
        *read_topic(settings, settings.claimx_downloads_dlq_topic),
        *read_topics(settings, settings.download_retry_topics),
    ]:
        info = read.failure()
        if info is not None and info.original_topic == cached:
            failures[info.original_offset].append(read)
    for poison, at in zip(poisons, placed, strict=True):
        letters = failures.get(at.offset, [])
        reasons = [letter.header("claimx.error_message") for letter in letters]
        findings.saw(
            f"cached:{poison.kind}", "uploaded" if poison.media_id in uploaded else "failed"
        )
        if poison.media_id in uploaded:
            findings.add(f"[cached:{poison.kind}] {poison.media_id}: uploaded", at.record)
        if len(letters) != 1 or not all(r and r.strip() for r in reasons):
            findings.add(
                f"[cached:{poison.kind}] {poison.media_id}: {len(letters)} failure records "
                f"{reasons}",
                at.record,
            )


def run_media(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp: Path,
    tasks: list[MediaTask],
    poisons: list[CachedPoison] | None = None,
) -> None:
    settings = media_settings(kafka_bootstrap, sim, tmp)
    sim.reset()
    sim.set_faults(hostile=media_hostility(tasks))
    records = [
        RawRecord(task.value, (task.media_id or "no-task").encode("utf-8", "surrogatepass"))
        for task in tasks
    ]
    placed = produce_exact(settings, settings.claimx_downloads_pending_topic, records)
    findings = Findings("media boundary")
    findings.stage_ran(run_stage_process(settings, "download", tmp / "logs", timeout_s=150))
    poisons = poisons or []
    cached = produce_exact(
        settings,
        settings.claimx_downloads_cached_topic,
        [RawRecord(p.message(settings), p.media_id.encode()) for p in poisons],
        partition=1,
    )
    findings.stage_ran(run_stage_process(settings, "upload", tmp / "logs", timeout_s=150))
    check_media(settings, tasks, placed, findings, frozenset(p.media_id for p in poisons))
    check_cached_poison(settings, poisons, cached, findings)
    for poison in poisons:
        if poison.kind == "outside" and not poison.outside(settings).exists():
            findings.add(f"[cached:outside] the upload deleted {poison.outside(settings)}")
        if poison.kind == "dir" and not settings.effective_cache_dir.is_dir():
            findings.add("[cached:dir] the upload removed the cache directory")
    findings.check()


@pytest.fixture(scope="module")
def media_sim(simulator: RunningSimulator) -> RunningSimulator:
    """The session's simulator, for drawing signed URLs inside the strategy."""
    return simulator


@runs_within(150)
@poison_settings
@given(data=st.data())
def test_every_media_file_ends_uploaded_or_in_the_download_dlq(
    kafka_bootstrap: str,
    sim: RunningSimulator,
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    tasks = data.draw(media_batches(sim), label="tasks")
    tasks = unique_media(tasks)
    poisons = data.draw(cached_poisons, label="cached")
    run_media(kafka_bootstrap, sim, tmp_path_factory.mktemp("media-poison"), tasks, poisons)


def unique_media(tasks: list[MediaTask]) -> list[MediaTask]:
    """One task per media id: a second would make "where did it end" ambiguous."""
    seen: set[str] = set()
    kept = []
    for task in tasks:
        if task.media_id is not None and task.media_id in seen:
            continue
        if task.media_id is not None:
            seen.add(task.media_id)
        kept.append(task)
    return kept
