"""Hostile ClaimX API answers: each failure is classified, routed with its reason and counted,
the body read is bounded in bytes and time, redirects are never followed, and the other task
of the same batch is enriched regardless.

The simulator's own knobs serve malformed and truncated bodies and unknown projects; a raw
loopback server (``tests.security.hostile``) plays the API for what the simulator cannot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from claimx_flow.api import ClaimXApiClient, ClaimXApiError
from claimx_flow.api.policy import ApiPolicy
from claimx_flow.config import Settings
from claimx_flow.errors import ErrorCategory
from claimx_flow.kafka.records import KafkaRecord, OutboundRecord
from claimx_flow.lab.simulator import RunningSimulator
from claimx_flow.models import EnrichmentTask, FailureInfo
from claimx_flow.models.messages import for_attempt
from claimx_flow.stages.enrich import EnrichStage
from claimx_flow.stages.outputs import RowBatch, SourcedRow, StageOutput
from tests.security import hostile
from tests.security.conftest import counted
from tests.security.hostile import Exchange, head, serving

GOOD, BAD = "5000001", "5000666"
BASE = "/service/cxedirest"
CAP = 1024 * 1024
POLICY = ApiPolicy(backoff_base_s=0.01, backoff_cap_s=0.05, max_response_bytes=CAP)
GOOD_PROJECT = json.dumps({"data": {"project": {"projectId": int(GOOD)}, "teamMembers": []}})


def task(project_id: str, event_type: str = "PROJECT_CREATED", **ids: str) -> EnrichmentTask:
    return EnrichmentTask(
        event_id=f"evt-{project_id}-{event_type}",
        event_type=event_type,
        project_id=project_id,
        ingested_at="2024-03-01T10:00:00Z",
        **ids,
    )


@dataclass
class Enriched:
    """What one batch of a bad and a good task gave, split by where it went."""

    settings: Settings
    outputs: list[StageOutput]

    def routed(self) -> OutboundRecord:
        (failed,) = [o for o in self.outputs if isinstance(o, OutboundRecord)]
        return failed

    def project_rows(self) -> list[str]:
        """The projects of the rows for ``claimx_projects`` (the enricher hands them over in
        Arrow, with their messages)."""
        return [
            project
            for o in self.outputs
            if isinstance(o, tuple) and o[0] == "claimx_projects"
            for project in _projects_of(o[1])
        ]


def _projects_of(rows: RowBatch | SourcedRow) -> list[str]:
    if isinstance(rows, RowBatch):
        assert len(rows.sources) == rows.rows.num_rows
        return [str(project) for project in rows.rows.column("project_id").to_pylist()]
    return [rows[0]["project_id"]]


def enrich(settings: Settings, tasks: list[EnrichmentTask]) -> Enriched:
    stage = EnrichStage.from_settings(settings)
    stage.make_client = lambda s: ClaimXApiClient(s, POLICY)
    records = [
        KafkaRecord(settings.claimx_enrichment_pending_topic, 0, i, None, t.kafka_key, t.to_json())
        for i, t in enumerate(tasks)
    ]

    async def go() -> list[StageOutput]:
        try:
            return await stage.process(list(zip(records, tasks, strict=True)))
        finally:
            await stage.close()

    return Enriched(settings, asyncio.run(go()))


def api_settings_for(url: str, **changes: object) -> Settings:
    values: dict[str, object] = {
        "claimx_api_url": url + BASE,
        "claimx_api_username": "u",
        "claimx_api_password": "hostile-test-password",
        "claimx_api_timeout_seconds": 1.0,
        "claimx_api_max_retries": 0,
    }
    return Settings(**{**values, **changes})


def assert_routed(result: Enriched, *, category: str, reason: str) -> FailureInfo:
    """The bad task went to the DLQ (permanent) or the first retry tier (transient) with its
    reason; the good task of the same batch was enriched anyway."""
    settings = result.settings
    routed = result.routed()
    expected_topic = (
        settings.claimx_enrichment_dlq_topic
        if category == "permanent"
        else settings.enrichment_retry_topics[0]
    )
    assert routed.topic == expected_topic
    info = FailureInfo.from_headers(routed.headers)
    sent = for_attempt(task(BAD).to_json(), info.attempt)  # the task, its count moved on
    assert routed.value == sent or b"PROJECT_FILE_ADDED" in (routed.value or b"")
    assert info.error_category == category
    assert reason in info.error_message, info.error_message
    assert GOOD in result.project_rows()
    return info


# The simulator's knobs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("malformed", "malformed JSON"), ("truncated", "truncated body")],
)
def test_malformed_and_truncated_bodies_are_transient(
    api_settings: Settings, sim: RunningSimulator, fault: str, reason: str
) -> None:
    settings = api_settings.model_copy(update={"claimx_api_max_retries": 0})
    sim.set_faults(fail_next=[fault])  # the first call of the batch gets it
    with (
        counted(
            "claimx_api_errors_total", stage="none", endpoint="project", category="transient"
        ) as api,
        counted("claimx_retries_total", stage="enrich", tier="300") as retried,
    ):
        result = enrich(settings, [task(BAD), task(GOOD)])
    routed = result.routed()
    info = FailureInfo.from_headers(routed.headers)
    assert routed.topic == settings.enrichment_retry_topics[0]
    assert info.error_category == "transient" and reason in info.error_message
    assert info.due_at is not None and info.due_at > info.last_failed_at
    assert len(result.project_rows()) == 1
    assert (api.delta, retried.delta) == (1, 1)


def test_an_unknown_project_is_permanent(api_settings: Settings, sim: RunningSimulator) -> None:
    sim.set_faults(not_found_projects=[BAD])
    with counted(
        "claimx_dlq_messages_total", stage="enrich", topic=api_settings.claimx_enrichment_dlq_topic
    ) as dead:
        result = enrich(api_settings, [task(BAD), task(GOOD)])
    assert_routed(result, category="permanent", reason="HTTP 404")
    assert dead.delta == 1


def test_a_media_id_missing_from_the_list_is_permanent(
    api_settings: Settings, sim: RunningSimulator
) -> None:
    missing = task(GOOD, "PROJECT_FILE_ADDED", media_id="77777777777")
    with counted("claimx_errors_total", stage="enrich", category="permanent") as errors:
        result = enrich(api_settings, [missing, task(GOOD)])
    routed = result.routed()
    assert routed.topic == api_settings.claimx_enrichment_dlq_topic
    info = FailureInfo.from_headers(routed.headers)
    assert info.error_message.startswith("MEDIA_NOT_FOUND: media 77777777777 is not in project")
    assert info.media_id == "77777777777"
    assert errors.delta == 1


@pytest.mark.parametrize("shape", ["bare", "mixed"])
def test_every_known_response_shape_is_read(
    api_settings: Settings, sim: RunningSimulator, shape: str
) -> None:
    sim.set_faults(project_shape=shape, media_shape="mixed")
    result = enrich(api_settings, [task(GOOD), task("5000002")])
    assert sorted(result.project_rows()) == [GOOD, "5000002"]


# A hostile API ------------------------------------------------------------------------------


@contextmanager
def hostile_api(bad: hostile.Handler) -> Iterator[hostile.HostileServer]:
    """The API: a good answer for GOOD, ``bad`` for everything else."""

    async def handle(exchange: hostile.Exchange) -> None:
        if exchange.request.path == f"{BASE}/export/project/{GOOD}":
            await exchange.respond(200, GOOD_PROJECT.encode(), {"Content-Type": "application/json"})
        else:
            await bad(exchange)

    with hostile.serving(handle) as server:
        yield server


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


_JSON = {"Content_Type": "application/json"}
# (case, what the API answers for BAD, the reason recorded, whether the HTTP attempt failed)
PERMANENT_ANSWERS: list[tuple[str, hostile.Handler, str, bool]] = [
    (
        "wrong shape (list)",
        hostile.answer(200, b"[1, 2, 3]", **_JSON),
        "unexpected response: expected a project, got a list",
        False,
    ),
    (
        "wrong shape (object)",
        hostile.answer(200, b'{"data": {"project": "5000666"}}', **_JSON),
        "unexpected response",
        False,
    ),
    (
        "integer too large for its column",
        hostile.answer(
            200, b'{"project": {"projectId": 5000666, "yearBuilt": 1' + b"0" * 30 + b"}}"
        ),
        "field year_built: integer out of range",
        False,
    ),
    (
        "lone surrogate in a text column",
        hostile.answer(200, b'{"project": {"projectId": 5000666, "status": "\\ud800"}}'),
        "field status",
        False,
    ),
    ("deep nesting", hostile.answer(200, _nested(100_000)), "JSON nested too deeply", True),
    (
        "huge (announced)",
        hostile.answer(200, b"x" * (2 * CAP), **_JSON),
        f"response of {2 * CAP} bytes over the limit of {CAP}",
        True,
    ),
    ("huge (endless)", hostile.endless(b"[" * 65536), f"over the limit of {CAP} bytes", True),
    (
        "gzip bomb",
        hostile.answer(200, hostile.gzip_bomb(64 * CAP), Content_Encoding="gzip"),
        f"over the limit of {CAP} bytes",
        True,
    ),
    ("404 with HTML", hostile.answer(404, b"<html>no</html>"), "HTTP 404: <html>no</html>", True),
    ("400", hostile.answer(400, b'{"error": "bad id"}'), "HTTP 400", True),
]


@pytest.mark.parametrize(
    ("bad", "reason", "http_failed"),
    [case[1:] for case in PERMANENT_ANSWERS],
    ids=[case[0] for case in PERMANENT_ANSWERS],
)
def test_a_permanently_bad_answer_goes_to_the_dlq_with_its_reason(
    bad: hostile.Handler, reason: str, http_failed: bool
) -> None:
    with hostile_api(bad) as api:
        settings = api_settings_for(api.origin)
        with (
            counted(
                "claimx_dlq_messages_total",
                stage="enrich",
                topic=settings.claimx_enrichment_dlq_topic,
            ) as dead,
            counted(
                "claimx_api_errors_total", stage="none", endpoint="project", category="permanent"
            ) as api_errors,
        ):
            result = enrich(settings, [task(BAD), task(GOOD)])
    info = assert_routed(result, category="permanent", reason=reason)
    assert info.project_id == BAD and info.event_id == task(BAD).event_id
    assert dead.delta == 1
    # A body that does not fit the table is the API answering; only HTTP failures count there.
    assert api_errors.delta == (1 if http_failed else 0)


def test_an_endless_body_is_read_only_up_to_the_cap() -> None:
    with hostile.serving(hostile.endless()) as server:
        result = enrich(api_settings_for(server.origin), [task(BAD)])
        time.sleep(0.2)
        sent = server.bytes_sent
    assert "over the limit" in FailureInfo.from_headers(result.routed().headers).error_message
    assert sent < CAP + 8 * 1024 * 1024  # the cap plus what the sockets buffered, not "forever"


def test_a_redirect_is_never_followed() -> None:
    with (
        hostile.serving(hostile.answer(200, GOOD_PROJECT.encode()), host="127.0.0.2") as elsewhere,
        hostile.serving(
            hostile.answer(302, Location=elsewhere.url(f"{BASE}/export/project/{BAD}"))
        ) as api,
        counted("claimx_errors_total", stage="enrich", category="permanent") as errors,
    ):
        result = enrich(api_settings_for(api.origin), [task(BAD)])
    info = FailureInfo.from_headers(result.routed().headers)
    assert info.error_category == "permanent" and "HTTP 302" in info.error_message
    assert elsewhere.connections == 0
    assert errors.delta == 1


@pytest.mark.parametrize("status", [301, 307, 308])
def test_a_redirect_to_the_metadata_address_is_not_followed(status: int) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    with hostile.serving(hostile.answer(status, Location=metadata)) as api:
        started = time.monotonic()
        patient = api_settings_for(api.origin, claimx_api_timeout_seconds=10.0)
        result = enrich(patient, [task(BAD)])
    info = FailureInfo.from_headers(result.routed().headers)
    assert f"HTTP {status}" in info.error_message and info.error_category == "permanent"
    assert [r.path for r in api.requests] == [f"{BASE}/export/project/{BAD}"]
    assert time.monotonic() - started < 5.0  # no connection attempt timed out somewhere


async def _drip(exchange: hostile.Exchange) -> None:
    await exchange.send(hostile.head(200, {"Content-Length": "100000"}))
    while True:
        await exchange.send(b" ")
        await asyncio.sleep(0.1)


def test_a_slow_drip_is_cut_by_the_timeout() -> None:
    with (
        hostile_api(_drip) as api,
        counted(
            "claimx_api_errors_total", stage="none", endpoint="project", category="transient"
        ) as api_errors,
    ):
        started = time.monotonic()
        result = enrich(
            api_settings_for(api.origin, claimx_api_timeout_seconds=1.0), [task(BAD), task(GOOD)]
        )
        elapsed = time.monotonic() - started
    assert_routed(result, category="transient", reason="no answer within 1s")
    assert elapsed < 3.0
    assert api_errors.delta == 1


def test_html_instead_of_json_is_transient() -> None:
    page = b"<!DOCTYPE html><html><body>Service Unavailable</body></html>"
    handler = hostile.answer(200, page, Content_Type="text/html")
    with hostile.serving(handler) as api:
        result = enrich(api_settings_for(api.origin), [task(BAD)])
    routed = result.routed()
    info = FailureInfo.from_headers(routed.headers)
    assert routed.topic == result.settings.enrichment_retry_topics[0]
    assert info.error_category == "transient" and "malformed JSON" in info.error_message


def test_answers_held_at_once_are_bounded() -> None:
    """Concurrent answers share one byte budget: one that finds no room is a transient failure
    (its task retries later), the other is read, and every byte is given back."""
    body = json.dumps([{"mediaID": i, "mediaName": "x" * 200} for i in range(1000)]).encode()

    async def in_halves(exchange: Exchange) -> None:
        headers = {"Content-Length": str(len(body)), "Content-Type": "application/json"}
        await exchange.send(head(200, {**headers, "Connection": "close"}))
        await exchange.send(body[: len(body) // 2])
        await asyncio.sleep(0.5)  # both answers are half read when the second halves come
        await exchange.send(body[len(body) // 2 :])

    policy = ApiPolicy(max_bytes_in_flight=len(body) + len(body) // 4, backoff_base_s=0.01)
    with serving(in_halves) as server:
        settings = api_settings_for(server.origin)

        async def both() -> tuple[list[object], int]:
            async with ClaimXApiClient(settings, policy) as client:
                calls = [client.request("media", "GET", "/media") for _ in range(2)]
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
                return outcomes, client._in_flight.used

        outcomes, held = asyncio.run(both())
    failed = [o for o in outcomes if isinstance(o, ClaimXApiError)]
    assert len(failed) == 1 and failed[0].category is ErrorCategory.TRANSIENT, outcomes
    assert "in flight" in str(failed[0])
    assert held == 0
