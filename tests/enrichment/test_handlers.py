"""Handlers against the API simulator over real HTTP: the exact rows of each event type, the
batching that keeps API calls per event low, and failures that are never silent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from claimx_flow.api import ClaimXApiClient
from claimx_flow.config import Settings
from claimx_flow.delta.tables import TABLES
from claimx_flow.enrichment import Enriched, EnrichedBatch, Enricher, EnrichmentFailed, ProjectCache
from claimx_flow.errors import ErrorCategory
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.models import EnrichmentTask
from tests.simulator_fixtures import SIMULATOR_SEED as SEED

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
INGESTED = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)


def task(event_type: str, project_id: int, **ids: Any) -> EnrichmentTask:
    return EnrichmentTask(
        event_id=f"e-{event_type}-{project_id}-{sorted(ids.items())}",
        event_type=event_type,
        project_id=str(project_id),
        ingested_at=INGESTED,
        **{k: str(v) for k, v in ids.items()},
    )


def enrich(
    settings: Settings, tasks: list[EnrichmentTask], cache: ProjectCache | None = None
) -> EnrichedBatch:
    async def run() -> EnrichedBatch:
        async with ClaimXApiClient(settings) as client:
            return await Enricher(client, cache, clock=lambda: NOW).enrich(tasks)

    return asyncio.run(run())


def rows_by_table(result: EnrichedBatch) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for outcome in result.outcomes:
        assert isinstance(outcome, Enriched), outcome
        for table, row in outcome.rows:
            tables.setdefault(table, []).append(row)
    for table, row in result.project_rows:
        tables.setdefault(table, []).append(row)
    for table, rows in tables.items():
        TABLES[table].to_arrow(rows)  # every row fits its table's schema
    return tables


def test_project_created_writes_project_and_contacts(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    result = rows_by_table(enrich(api_settings, [task("PROJECT_CREATED", 4242)]))
    (project,) = result["claimx_projects"]
    source = sim_data.project(SEED, 4242)
    assert project["project_id"] == "4242"
    assert project["mfn"] == source["mfn"]
    assert project["status"] == source["status"]
    assert project["year_built"] == source["yearBuilt"]
    assert project["customer_email"] == next(
        e["emailAddress"] for e in source["customerInformation"]["emails"] if e["primary"]
    )
    assert project["address_city"] == source["address"]["city"]
    assert project["company_name"] == sim_data.COMPANY_NAME
    assert project["last_enriched_at"] == NOW
    members = sim_data.team_members(SEED, 4242)
    contacts = result["claimx_contacts"]
    assert {(c["contact_type"], c["contact_email"]) for c in contacts} == {
        ("POLICYHOLDER", project["customer_email"]),
        *(("CLAIM_REP", m["userName"]) for m in members),
    }
    assert sim.stats.requests["project"] == 1


def test_mfn_sets_master_file_name(api_settings: Settings, sim: RunningSimulator) -> None:
    t = task("PROJECT_MFN_ADDED", 77, master_file_name="MFN-77-X")
    result = enrich(api_settings, [t])
    (outcome,) = result.outcomes
    assert isinstance(outcome, Enriched)
    assert outcome.rows == [
        (
            "claimx_projects",
            {
                "project_id": "77",
                "master_file_name": "MFN-77-X",
                "event_id": t.event_id,
                "last_enriched_at": NOW,
            },
        )
    ]


@pytest.mark.parametrize(
    ("event_type", "column"),
    [
        ("POLICYHOLDER_INVITED", "policyholder_invited_at"),
        ("POLICYHOLDER_JOINED", "policyholder_joined_at"),
    ],
)
def test_policyholder_events_set_only_their_column(
    api_settings: Settings, sim: RunningSimulator, event_type: str, column: str
) -> None:
    t = task(event_type, 91)
    result = enrich(api_settings, [t])
    (outcome,) = result.outcomes
    assert isinstance(outcome, Enriched)
    assert outcome.rows == [
        (
            "claimx_projects",
            {"project_id": "91", column: INGESTED, "event_id": t.event_id, "last_enriched_at": NOW},
        )
    ]
    assert next(table for table, _ in result.project_rows) == "claimx_projects"  # pre-flight


def test_xa_linking_needs_no_api_call(api_settings: Settings, sim: RunningSimulator) -> None:
    t = task("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL", 55)
    result = enrich(api_settings, [t])
    (outcome,) = result.outcomes
    assert isinstance(outcome, Enriched)
    assert outcome.rows == [
        (
            "claimx_projects",
            {
                "project_id": "55",
                "xa_autolink_fail": True,
                "xa_autolink_fail_at": INGESTED,
                "event_id": t.event_id,
                "last_enriched_at": NOW,
            },
        )
    ]
    assert sim.stats.api_calls == 0


def test_file_added_writes_media_and_a_download_task(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    media_id = sim_data.media_ids(SEED, 300)[3]
    t = task("PROJECT_FILE_ADDED", 300, media_id=media_id)
    result = enrich(api_settings, [t])
    (outcome,) = result.outcomes
    assert isinstance(outcome, Enriched)
    ((table, row),) = outcome.rows
    fields = sim_data._media_fields(SEED, media_id)
    assert table == "claimx_media"
    assert row["media_id"] == str(media_id) and row["project_id"] == "300"
    assert row["media_name"] == fields["mediaName"] and row["media_type"] == fields["mediaType"]
    assert row["latitude"] == fields["latitude"]
    assert row["full_download_link"].startswith(sim.origin)
    (download,) = outcome.downloads
    assert download.media_id == str(media_id)
    assert download.download_url == row["full_download_link"]
    assert download.file_name == fields["mediaName"]
    assert download.source_event_id == t.event_id
    assert sim.stats.requests["media"] == 1


def test_hundred_file_events_for_one_project_cost_two_calls(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    ids = sim_data.media_ids(SEED, 812)
    tasks = [task("PROJECT_FILE_ADDED", 812, media_id=ids[i % len(ids)]) for i in range(100)]
    tasks = [t.model_copy(update={"event_id": f"e{i}"}) for i, t in enumerate(tasks)]
    result = enrich(api_settings, tasks)
    assert all(isinstance(o, Enriched) for o in result.outcomes)
    assert sum(len(o.downloads) for o in result.outcomes if isinstance(o, Enriched)) == 100
    assert sim.stats.api_calls <= 2


def test_project_cache_spares_the_project_call_across_batches(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    cache = ProjectCache()
    media = sim_data.media_ids(SEED, 640)
    enrich(api_settings, [task("PROJECT_FILE_ADDED", 640, media_id=media[0])], cache)
    second = enrich(api_settings, [task("PROJECT_FILE_ADDED", 640, media_id=media[1])], cache)
    assert second.project_rows == []
    assert sim.stats.requests["project"] == 1


def test_task_events_write_task_template_and_link(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    assignment_id = sim_data.task_assignment_ids(SEED, 501)[0]
    result = rows_by_table(
        enrich(api_settings, [task("CUSTOM_TASK_COMPLETED", 501, task_assignment_id=assignment_id)])
    )
    source = sim_data.task_assignment(SEED, assignment_id)
    (task_row,) = result["claimx_tasks"]
    assert task_row["assignment_id"] == str(assignment_id)
    assert task_row["task_name"] == source["taskName"]
    assert task_row["form_response_id"] == source["formResponseId"]
    (template,) = result["claimx_task_templates"]
    assert template["task_id"] == str(source["customTask"]["taskId"])
    assert template["is_default"] == source["customTask"]["default"]
    assert template["allow_resubmit"] == source["customTask"]["allowReSubmit"]
    (link,) = result["claimx_external_links"]
    assert link["link_id"] == str(source["externalLinkData"]["linkId"])
    assert task_row["link_id"] == link["link_id"]


def test_video_events_write_the_collaboration(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    result = rows_by_table(enrich(api_settings, [task("VIDEO_COLLABORATION_COMPLETED", 733)]))
    (row,) = result["claimx_video_collab"]
    source = sim_data.video_collaboration(SEED, sim_data.video_collaboration_id(733))
    assert row["video_collaboration_id"] == str(source["videoCollaborationId"])
    assert row["claim_id"] == "733"
    assert row["total_time_seconds"] == source["totalTimeSeconds"]
    assert row["number_of_photos"] == source["numberOfPhotos"]


def test_unknown_event_type_is_a_permanent_failure(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    (outcome,) = enrich(api_settings, [task("SOMETHING_NEW", 1)]).outcomes
    assert isinstance(outcome, EnrichmentFailed)
    assert outcome.category is ErrorCategory.PERMANENT
    assert outcome.message.startswith("UNKNOWN_EVENT_TYPE")


def test_media_missing_from_the_project_fails_only_its_task(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    good = sim_data.media_ids(SEED, 900)[0]
    tasks = [
        task("PROJECT_FILE_ADDED", 900, media_id=good),
        task("PROJECT_FILE_ADDED", 900, media_id=999_999_999),
    ]
    first, second = enrich(api_settings, tasks).outcomes
    assert isinstance(first, Enriched)
    assert isinstance(second, EnrichmentFailed) and second.message.startswith("MEDIA_NOT_FOUND")
    assert second.category is ErrorCategory.PERMANENT


def test_api_failures_are_classified_per_task(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    sim.set_faults(not_found_projects=[404])
    (outcome,) = enrich(api_settings, [task("PROJECT_CREATED", 404)]).outcomes
    assert isinstance(outcome, EnrichmentFailed) and outcome.category is ErrorCategory.PERMANENT
    sim.set_faults(not_found_projects=[], down=True)
    (outcome,) = enrich(api_settings, [task("PROJECT_CREATED", 405)]).outcomes
    assert isinstance(outcome, EnrichmentFailed) and outcome.category is ErrorCategory.TRANSIENT


def test_a_batch_past_its_deadline_leaves_no_call_running_for_the_next(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    """An API that answers every call, slowly (0.2 s, one call at a time). Found failing: the
    calls of a batch whose tasks ran out of their deadline kept running (shielded, for the
    batch's other tasks), holding the client's slots; the next batches' calls queued behind
    them and every task of those batches timed out, while the API served calls nobody
    awaited. Each batch now enriches what its deadline allows, and its calls end with it."""
    settings = api_settings.model_copy(update={"claimx_api_concurrency": 1})
    sim.set_faults(latency_ms=200)
    served_while_idle: list[int] = []

    async def four_batches() -> list[EnrichedBatch]:
        batches = []
        async with ClaimXApiClient(settings) as client:
            enricher = Enricher(client, ProjectCache(), clock=lambda: NOW, deadline_s=1.0)
            for b in range(4):
                tasks = [task("PROJECT_CREATED", 5000 + 100 * b + i) for i in range(20)]
                batches.append(await enricher.enrich(tasks))
                before = sim.stats.requests["project"]
                await asyncio.sleep(1.0)  # the client still open, no batch running
                served_while_idle.append(sim.stats.requests["project"] - before)
        return batches

    try:
        batches = asyncio.run(four_batches())
    finally:
        sim.reset()
    enriched = [sum(isinstance(o, Enriched) for o in b.outcomes) for b in batches]
    assert all(count >= 1 for count in enriched), enriched
    # At most the call in flight when its batch ended (served after the cancel: the simulator
    # counts a request when it starts answering it).
    assert all(count <= 1 for count in served_while_idle), served_while_idle


def test_a_media_id_the_api_refuses_fails_alone(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    """A few file events of one project share one selective media query; an id the API
    refuses there (400: ``abc`` is no media id) must not cost the others: they are looked up
    in the project's whole list, and only the refused one fails."""
    media = sim_data.media_ids(SEED, 813)
    tasks = [task("PROJECT_FILE_ADDED", 813, media_id=m) for m in (media[0], "abc", media[1])]
    outcomes = enrich(api_settings, tasks).outcomes
    assert [type(o).__name__ for o in outcomes] == ["Enriched", "EnrichmentFailed", "Enriched"]
    refused = outcomes[1]
    assert isinstance(refused, EnrichmentFailed)
    assert refused.category is ErrorCategory.PERMANENT and "MEDIA_NOT_FOUND" in refused.message
