"""How a batch is enriched, against a canned in-process API: file events of a project go
together (one wait for the project and media calls), every other task alone, and the outcomes
still come back one per task, in order, each failure confined to the tasks it concerns.

The API here is canned, not the simulator: these tests need each call to answer exactly as
written (a chosen failure, a generated media item per hypothesis example, hundreds a second).
The same paths against the real simulator over HTTP are ``test_handlers.py`` and, through real
stage processes with hostile answers, ``tests/poison/test_enrich_boundary.py``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from claimx_flow.api.errors import ClaimXApiError
from claimx_flow.config import Settings
from claimx_flow.delta.tables import CONTACTS, PROJECTS
from claimx_flow.enrichment import Enriched, Enricher, EnrichmentFailed, ProjectCache
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord, RecordBatch
from claimx_flow.models import DownloadTask, EnrichmentTask
from claimx_flow.stages.enrich import EnrichStage

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LINK = "https://example.test/m"


class CannedApi:
    """Projects and media lists from dicts; a project id in ``broken`` answers with an error."""

    def __init__(
        self, media: dict[str, list[dict[str, Any]]], broken: frozenset[str] = frozenset()
    ) -> None:
        self.media = media
        self.broken = broken
        self.calls: list[tuple[str, str]] = []

    async def get_project(self, project_id: str) -> dict[str, Any]:
        self.calls.append(("project", project_id))
        await asyncio.sleep(0)
        if project_id in self.broken:
            raise ClaimXApiError(ErrorCategory.TRANSIENT, "project", "HTTP 503")
        return {"project": {"projectId": project_id}, "companyName": "Co"}

    async def get_media(
        self, project_id: str, media_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("media", project_id))
        await asyncio.sleep(0)
        return self.media.get(project_id, [])

    async def get_task_assignment(self, assignment_id: str) -> dict[str, Any]:
        raise AssertionError("not a task event")

    async def get_video_collaboration(self, project_id: str) -> dict[str, Any] | None:
        raise AssertionError("not a video event")


def task(event_type: str, project_id: str, media_id: str | None = None) -> EnrichmentTask:
    return EnrichmentTask(
        event_id=f"e-{event_type}-{project_id}-{media_id}",
        event_type=event_type,
        project_id=project_id,
        media_id=media_id,
        ingested_at=NOW,
    )


def files(project_id: str, *ids: str) -> list[EnrichmentTask]:
    return [task("PROJECT_FILE_ADDED", project_id, media_id) for media_id in ids]


def items(*ids: int) -> list[dict[str, Any]]:
    return [{"mediaID": n, "fullDownloadLink": f"{LINK}/{n}"} for n in ids]


def enrich(api: CannedApi, tasks: list[EnrichmentTask], cache: ProjectCache | None = None) -> Any:
    return asyncio.run(Enricher(api, cache, clock=lambda: NOW).enrich(tasks))


def test_media_are_looked_up_by_either_spelling_of_the_id_first_item_winning() -> None:
    media = [
        {"mediaID": 1, "fullDownloadLink": f"{LINK}/1", "mediaName": "first"},
        {"mediaId": "2", "fullDownloadLink": f"{LINK}/2"},
        {"mediaID": 1, "fullDownloadLink": f"{LINK}/1b", "mediaName": "second"},
        {"mediaName": "no id"},
        *items(*range(3, 10)),
    ]
    api = CannedApi({"5": media})
    first, second, last, missing = enrich(api, files("5", "1", "2", "9", "404")).outcomes
    assert isinstance(first, Enriched) and first.rows[0][1]["media_name"] == "first"
    assert first.downloads[0].download_url == f"{LINK}/1"
    assert isinstance(second, Enriched) and second.downloads[0].media_id == "2"
    assert isinstance(last, Enriched) and last.downloads[0].download_url == f"{LINK}/9"
    assert isinstance(missing, EnrichmentFailed)
    assert missing.message.startswith("MEDIA_NOT_FOUND: media 404 is not in project 5")
    assert api.calls == [("project", "5"), ("media", "5")]


def test_interleaved_projects_keep_task_order_and_one_call_each() -> None:
    api = CannedApi({"5": items(1, 2, 3), "6": items(4, 5, 6)})
    tasks = [
        *files("5", "1"),
        *files("6", "4"),
        task("PROJECT_CREATED", "7"),
        *files("5", "2"),
        task("PROJECT_FILE_ADDED", "6"),  # no media id
        *files("6", "5", "6"),
        *files("5", "3"),
    ]
    batch = enrich(api, tasks)
    assert [outcome.task for outcome in batch.outcomes] == tasks
    failed = [o for o in batch.outcomes if isinstance(o, EnrichmentFailed)]
    assert [(o.task, o.message) for o in failed] == [
        (tasks[4], "MISSING_FIELD: PROJECT_FILE_ADDED event without media_id")
    ]
    enriched = [o for o in batch.outcomes if isinstance(o, Enriched)]
    done = [o.downloads[0].media_id for o in enriched if o.downloads]
    assert done == ["1", "4", "2", "5", "6", "3"]
    assert sorted(api.calls) == [
        ("media", "5"),
        ("media", "6"),
        ("project", "5"),
        ("project", "6"),
        ("project", "7"),
    ]
    assert sorted(row["project_id"] for _, row in batch.project_rows) == ["5", "6", "7"]
    first_of_5 = next(row for _, row in batch.project_rows if row["project_id"] == "5")
    assert first_of_5["event_id"] == tasks[0].event_id


def test_a_failed_project_call_fails_that_projects_file_events_only() -> None:
    api = CannedApi({"5": items(1, 2), "6": items(3)}, broken=frozenset({"5"}))
    tasks = [*files("5", "1"), *files("6", "3"), *files("5", "2")]
    first, other, second = enrich(api, tasks).outcomes
    for failed in (first, second):
        assert isinstance(failed, EnrichmentFailed)
        assert failed.category is ErrorCategory.TRANSIENT
        assert "HTTP 503" in failed.message
    assert isinstance(other, Enriched)
    assert ("media", "5") not in api.calls


def test_a_failed_media_call_fails_its_projects_file_events_each_for_its_own_reason() -> None:
    class NoMedia(CannedApi):
        async def get_media(
            self, project_id: str, media_ids: list[str] | None = None
        ) -> list[dict[str, Any]]:
            self.calls.append(("media", project_id))
            raise ClaimXApiError(ErrorCategory.TRANSIENT, "media", "HTTP 503")

    api = NoMedia({})
    tasks = [*files("5", "1"), task("PROJECT_FILE_ADDED", "5"), *files("5", "2")]
    first, without_id, second = enrich(api, tasks).outcomes
    for failed in (first, second):
        assert isinstance(failed, EnrichmentFailed)
        assert failed.category is ErrorCategory.TRANSIENT and "HTTP 503" in failed.message
    # A task that is wrong in itself is dead-lettered as such, not retried for the API's fault.
    assert isinstance(without_id, EnrichmentFailed)
    assert without_id.category is ErrorCategory.PERMANENT
    assert without_id.message == "MISSING_FIELD: PROJECT_FILE_ADDED event without media_id"
    assert api.calls == [("project", "5"), ("media", "5")]


def test_file_events_without_media_ids_make_no_media_call() -> None:
    api = CannedApi({"5": items(1)})
    (outcome,) = enrich(api, [task("PROJECT_FILE_ADDED", "5")]).outcomes
    assert isinstance(outcome, EnrichmentFailed) and outcome.message.startswith("MISSING_FIELD")
    assert api.calls == [("project", "5")]


def test_a_cached_project_spares_its_call_for_file_events() -> None:
    cache = ProjectCache()
    cache.remember("5")
    api = CannedApi({"5": items(1, 2)})
    batch = enrich(api, files("5", "1", "2"), cache)
    assert all(isinstance(o, Enriched) for o in batch.outcomes)
    assert api.calls == [("media", "5")] and batch.project_rows == []


class SlowProjects(CannedApi):
    """Project calls answer after ``delay_s``, so a second batch starts while the first waits;
    project ids in ``broken`` fail only their first call."""

    def __init__(self, media: dict[str, list[dict[str, Any]]], **kwargs: Any) -> None:
        super().__init__(media, **kwargs)
        self.failed: set[str] = set()

    async def get_project(self, project_id: str) -> dict[str, Any]:
        self.calls.append(("project", project_id))
        await asyncio.sleep(0.05)
        if project_id in self.broken and project_id not in self.failed:
            self.failed.add(project_id)
            raise ClaimXApiError(ErrorCategory.TRANSIENT, "project", "HTTP 503")
        return {"project": {"projectId": project_id}, "companyName": "Co"}


def enrich_overlapping(
    api: CannedApi, first: list[EnrichmentTask], second: list[EnrichmentTask]
) -> tuple[Any, Any]:
    """Two batches on one enricher, the second started while the first waits for its calls."""
    enricher = Enricher(api, ProjectCache(), clock=lambda: NOW)

    async def both() -> tuple[Any, Any]:
        earlier = asyncio.ensure_future(enricher.enrich(first))
        await asyncio.sleep(0.01)
        later = asyncio.ensure_future(enricher.enrich(second))
        return await earlier, await later

    return asyncio.run(both())


def test_a_batch_begun_while_an_earlier_one_fetches_its_project_does_not_fetch_or_write_it() -> (
    None
):
    """As if it had started after the earlier batch: one project call and one project row, the
    earlier batch's, whichever batch's call answers first."""
    api = SlowProjects({"5": items(1, 2, 3)})
    earlier, later = enrich_overlapping(api, files("5", "1"), files("5", "2", "3"))
    assert all(isinstance(o, Enriched) for o in earlier.outcomes + later.outcomes)
    assert api.calls.count(("project", "5")) == 1
    assert [row["event_id"] for _, row in earlier.project_rows] == ["e-PROJECT_FILE_ADDED-5-1"]
    assert later.project_rows == []


def test_a_batch_fetches_for_itself_when_the_earlier_batchs_project_call_fails() -> None:
    api = SlowProjects({"5": items(1, 2)}, broken=frozenset({"5"}))
    earlier, later = enrich_overlapping(api, files("5", "1"), files("5", "2"))
    assert [type(o) for o in earlier.outcomes] == [EnrichmentFailed]
    assert [type(o) for o in later.outcomes] == [Enriched]
    assert api.calls.count(("project", "5")) == 2
    assert [row["event_id"] for _, row in later.project_rows] == ["e-PROJECT_FILE_ADDED-5-2"]


def test_a_batch_whose_project_call_outlives_its_deadline_leaves_the_row_to_the_next() -> None:
    """The first batch gives up on its project call (its deadline), and writes no project
    row; the call answers later. The next batch must not take that answer for a written row:
    it fetches the project again and writes it."""

    class FirstCallSlow(SlowProjects):
        async def get_project(self, project_id: str) -> dict[str, Any]:
            if not self.calls:
                self.calls.append(("project", project_id))
                await asyncio.sleep(0.3)
                return {"project": {"projectId": project_id}, "companyName": "Co"}
            return await super().get_project(project_id)

    api = FirstCallSlow({"5": items(1, 2)})
    enricher = Enricher(api, ProjectCache(), clock=lambda: NOW, deadline_s=0.15)

    async def one_after_the_other() -> tuple[Any, Any]:
        first = await enricher.enrich(files("5", "1"))
        await asyncio.sleep(0.3)  # the first call answers meanwhile
        return first, await enricher.enrich(files("5", "2"))

    first, second = asyncio.run(one_after_the_other())
    assert [o.error_class for o in first.outcomes] == ["TimeoutError"]
    assert first.project_rows == []
    assert [type(o) for o in second.outcomes] == [Enriched]
    assert [row["event_id"] for table, row in second.project_rows if table == PROJECTS.name] == [
        "e-PROJECT_FILE_ADDED-5-2"
    ]


def test_groups_of_one_batch_share_its_project_call_and_row() -> None:
    """A policyholder event and a file event of one project, in one batch: one call, one
    project row, and neither group waits on the batch's own promise."""
    api = SlowProjects({"5": items(1)})
    tasks = [task("POLICYHOLDER_INVITED", "5"), *files("5", "1")]
    batch = asyncio.run(
        asyncio.wait_for(Enricher(api, ProjectCache(), clock=lambda: NOW).enrich(tasks), 5)
    )
    assert [type(o) for o in batch.outcomes] == [Enriched, Enriched]
    assert api.calls.count(("project", "5")) == 1
    assert [table for table, _ in batch.project_rows].count(PROJECTS.name) == 1


def test_a_project_event_fetches_its_project_even_while_an_earlier_batch_does() -> None:
    """Project events are about the project itself: they always fetch, overlapping or not."""
    api = SlowProjects({"5": items(1)})
    earlier, later = enrich_overlapping(api, files("5", "1"), [task("PROJECT_CREATED", "5")])
    assert [type(o) for o in earlier.outcomes + later.outcomes] == [Enriched, Enriched]
    assert api.calls.count(("project", "5")) == 2
    assert [row["event_id"] for _, row in later.project_rows][:1] == ["e-PROJECT_CREATED-5-None"]


def test_cancellation_is_not_turned_into_failures() -> None:
    class Cancelled(CannedApi):
        async def get_media(
            self, project_id: str, media_ids: list[str] | None = None
        ) -> list[dict[str, Any]]:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        enrich(Cancelled({}), files("5", "1", "2"))


@pytest.mark.usefixtures("clean_env")
def test_the_stage_counts_enriched_events_by_type_and_writes_each_download() -> None:
    api = CannedApi({"5": items(1, 2, 3)})
    settings = Settings()
    stage = EnrichStage.from_settings(settings)
    stage._enricher = Enricher(api, clock=lambda: NOW)
    tasks = [*files("5", "1", "2", "404"), task("PROJECT_CREATED", "5")]
    records = [
        KafkaRecord(settings.claimx_enrichment_pending_topic, 0, i, None, t.kafka_key, t.to_json())
        for i, t in enumerate(tasks)
    ]

    def count(event_type: str) -> float:
        sample = "claimx_events_enriched_total"
        return REGISTRY.get_sample_value(sample, {"event_type": event_type}) or 0.0

    before = {kind: count(kind) for kind in ("PROJECT_FILE_ADDED", "PROJECT_CREATED")}
    outputs = asyncio.run(stage.process(list(zip(records, tasks, strict=True))))
    assert count("PROJECT_FILE_ADDED") - before["PROJECT_FILE_ADDED"] == 2
    assert count("PROJECT_CREATED") - before["PROJECT_CREATED"] == 1
    sent = [o for o in outputs if isinstance(o, OutboundRecord)]
    downloads = [o for o in sent if o.topic == settings.claimx_downloads_pending_topic]
    assert [DownloadTask.from_json(o.value).media_id for o in downloads] == ["1", "2"]
    assert [o.key for o in downloads] == [b"1", b"2"]
    assert len(sent) == 3  # and the missing media's failure, routed


class ProjectAnswers(CannedApi):
    """``CannedApi`` with a project answer of its own per project."""

    def __init__(self, projects: dict[str, dict[str, Any]]) -> None:
        super().__init__({pid: items(int(pid) * 10) for pid in projects})
        self.projects = projects

    async def get_project(self, project_id: str) -> dict[str, Any]:
        await super().get_project(project_id)
        return self.projects[project_id]


def _answer(project_id: str, *, email: str = "ph@example.test", rep: str = "rep") -> Any:
    customer = {"firstName": "Pat", "emails": [{"emailAddress": email, "primary": True}]}
    return {
        "project": {"projectId": project_id, "customerInformation": customer},
        "teamMembers": [{"userName": rep, "primaryContact": False}],
        "companyName": "Co",
    }


@pytest.mark.usefixtures("clean_env")
def test_project_rows_are_converted_once_and_written_as_converted() -> None:
    """The project and contact rows checked in Arrow are the ones written, each with the first
    message of its project. Project 6 fails only its contacts' table, after its project row had
    converted: its project row must go too. Project 7 fails the projects table."""
    api = ProjectAnswers(
        {"5": _answer("5"), "6": _answer("6", rep="\ud800"), "7": _answer("7", email="\ud800")}
    )
    tasks = [*files("5", "50"), *files("6", "60"), *files("7", "70"), *files("5", "50")]
    batch = enrich(api, tasks)
    assert [type(o).__name__ for o in batch.outcomes] == [
        "Enriched",
        "EnrichmentFailed",
        "EnrichmentFailed",
        "Enriched",
    ]
    for spec in (PROJECTS, CONTACTS):
        rows = [row for table, row in batch.project_rows if table == spec.name]
        converted = batch.project_tables[spec.name]
        assert converted.to_pylist() == spec.to_arrow(rows).to_pylist()
        assert set(converted.column("project_id").to_pylist()) == {"5"}

    settings = Settings()
    stage = EnrichStage.from_settings(settings)
    stage._enricher = Enricher(ProjectAnswers(api.projects), clock=lambda: NOW)
    records = [
        KafkaRecord(settings.claimx_enrichment_pending_topic, 0, i, None, t.kafka_key, t.to_json())
        for i, t in enumerate(tasks)
    ]
    out = asyncio.run(stage.enrich(RecordBatch("0-pending", records)))
    assert out.tables[PROJECTS.name].sources == [records[0]]
    assert out.tables[CONTACTS.name].sources == [records[0], records[0]]
    assert out.tables[PROJECTS.name].rows.column("event_id").to_pylist() == [tasks[0].event_id]
    dead = [r for r in out.records if r.topic == settings.claimx_enrichment_dlq_topic]
    assert sorted(r.key for r in dead) == [b"6", b"7"]


def test_an_unfit_project_beside_projects_without_contacts_fails_only_its_own_tasks() -> None:
    """Found failing in review: when no project left in the batch had a contact, the contacts
    table converted to no rows, and dropping the unfit project's rows from it raised (a mask
    of no values has no type), failing the whole batch instead of the one project's tasks."""
    bare = {"project": {"projectId": "5"}, "companyName": "Co"}
    for unfit in (_answer("6", rep="\ud800"), _answer("6", email="\ud800")):
        api = ProjectAnswers({"5": bare, "6": unfit})
        batch = enrich(api, [*files("5", "50"), *files("6", "60")])
        assert [type(o).__name__ for o in batch.outcomes] == ["Enriched", "EnrichmentFailed"]
        assert CONTACTS.name not in batch.project_tables
        assert batch.project_tables[PROJECTS.name].column("project_id").to_pylist() == ["5"]


# What the API may send for a file, generated: values of every JSON type, any text, timestamps
# as ISO text (with or without an offset), epoch milliseconds or junk.
_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
_timestamps = st.one_of(
    _json_scalars,
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.integers(min_value=-(10**13), max_value=10**13),
)
_media_items = st.fixed_dictionaries(
    {},
    optional={
        "fullDownloadLink": st.one_of(_json_scalars, st.just(LINK)),
        "mediaName": _json_scalars,
        "mediaType": _json_scalars,
        "expiresAt": _timestamps,
    },
)
_media_ids = st.integers(min_value=0, max_value=10**15)
_event_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=70)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_media_items, _media_ids, st.booleans(), st.sampled_from(["mediaID", "mediaId"]), _event_ids)
def test_download_tasks_are_the_messages_a_download_task_model_would_write(
    item: dict[str, Any], media_id: int, id_as_text: bool, spelling: str, event_id: str
) -> None:
    """The download message is written straight from the media row's typed values; whatever
    the API sent, a file event either fails alone or writes exactly ``DownloadTask``'s bytes,
    which the download stage reads back."""
    answer = {**item, spelling: str(media_id) if id_as_text else media_id}
    file_event = EnrichmentTask(
        event_id=event_id,
        event_type="PROJECT_FILE_ADDED",
        project_id="5",
        media_id=str(media_id),
        ingested_at=NOW,
    )
    (outcome,) = enrich(CannedApi({"5": [answer]}), [file_event]).outcomes
    event(type(outcome).__name__)
    if isinstance(outcome, EnrichmentFailed):
        return
    (download,) = outcome.downloads
    model = DownloadTask(**download._asdict())
    assert download.to_json() == model.to_json()
    assert download.kafka_key == model.kafka_key
    assert DownloadTask.from_json(download.to_json()) == model
    assert LINK not in repr(download)  # a presigned URL is a credential
