"""The ClaimX API simulator over real HTTP: data, auth, signed URLs, faults, counters, events."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from claimx_flow.cli import app
from claimx_flow.lab.simulator import RunningSimulator, SimulatorConfig, start_subprocess
from claimx_flow.lab.simulator import data as simdata
from claimx_flow.lab.simulator.events import MIXED_WEIGHTS, EventPlan, event_lines
from claimx_flow.lab.simulator.signing import UrlCheck, UrlSigner
from tests.simulator_fixtures import SIMULATOR_PASSWORD, SIMULATOR_SEED, SIMULATOR_USERNAME

GOOD_AUTH = (
    "Basic " + base64.b64encode(f"{SIMULATOR_USERNAME}:{SIMULATOR_PASSWORD}".encode()).decode()
)

PROJECT_FIELDS = (  # noqa: SIM905 - one field list, as the domain reference prints it
    "projectId projectNumber mfn secondaryNumber createdDate status dateOfLoss typeOfLoss "
    "causeOfLoss lossDescription yearBuilt squareFootage dateReceived dateContacted "
    "plannedInspectionDate dateInspected appointmentDate customAttribute1 customAttribute2 "
    "customAttribute3 customExternalUniqueId customerInformation address"
).split()
MEDIA_FIELDS = (  # noqa: SIM905
    "mediaID taskAssignmentId mediaType mediaName mediaDescription mediaComment latitude "
    "longitude gpsSource takenDate fullDownloadLink expiresAt"
).split()
VIDEO_FIELDS = (  # noqa: SIM905
    "videoCollaborationId claimId mfn claimNumber policyNumber emailUserName claimRepFirstName "
    "claimRepLastName claimRepFullName numberOfVideos numberOfPhotos numberOfViewers "
    "sessionCount totalTimeSeconds totalTime createdDate liveCallFirstSession "
    "liveCallLastSession companyId companyName guid"
).split()


class Reply:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str,
    method: str = "GET",
    body: Any = None,
    auth: str | None = GOOD_AUTH,
    timeout: float = 5,
) -> Reply:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), dict(error.headers))


def project_url(sim: RunningSimulator, project_id: object, suffix: str = "") -> str:
    return f"{sim.api_url}/export/project/{project_id}{suffix}"


# Deterministic data --------------------------------------------------------------------------


def test_any_numeric_project_has_every_field_and_is_the_same_every_time(
    sim: RunningSimulator,
) -> None:
    first = http(project_url(sim, 987654)).json()
    assert first == http(project_url(sim, 987654)).json()
    assert first == simdata.project_response(SIMULATOR_SEED, 987654)
    project = first["data"]["project"]
    assert set(PROJECT_FIELDS) <= set(project)
    assert project["projectId"] == 987654
    customer = project["customerInformation"]
    assert [e["primary"] for e in customer["emails"]].count(True) == 1
    assert customer["phones"][0]["phoneNumber"]
    assert set(project["address"]) == {
        "street1", "street2", "city", "stateProvince", "zipPostcode", "county", "country"
    }  # fmt: skip
    assert first["data"]["teamMembers"][0]["userName"]
    assert first["data"]["companyName"]
    assert http(project_url(sim, 987655)).json() != first
    assert simdata.project_response(SIMULATOR_SEED + 1, 987654) != first


def test_media_list_task_and_video_carry_every_field(sim: RunningSimulator) -> None:
    media = http(project_url(sim, 4242, "/media")).json()
    assert simdata.MIN_MEDIA <= len(media) <= simdata.MAX_MEDIA
    assert [m["mediaID"] for m in media] == simdata.media_ids(SIMULATOR_SEED, 4242)
    assert all(set(MEDIA_FIELDS) == set(m) for m in media)

    task_id = simdata.task_assignment_ids(SIMULATOR_SEED, 4242)[0]
    task = http(f"{sim.api_url}/customTasks/assignment/{task_id}?full=true").json()
    assert task["projectId"] == 4242 and task["assignmentId"] == task_id
    assert {"taskId", "modifiedDate", "formName"} <= set(task["customTask"])
    assert {"linkId", "linkCode", "phoneCountryCode"} <= set(task["externalLinkData"])

    body = {"reportType": "VIDEO_COLLABORATION", "projectId": 4242, "senderUsername": "x"}
    video = http(f"{sim.api_url}/data", "POST", body).json()
    assert set(VIDEO_FIELDS) == set(video)
    assert video["claimId"] == 4242


def test_selective_media_query_returns_only_known_requested_ids(sim: RunningSimulator) -> None:
    ids = simdata.media_ids(SIMULATOR_SEED, 77)
    query = f"/media?mediaIds={ids[3]},{ids[0]},99999999"
    media = http(project_url(sim, 77, query)).json()
    assert [m["mediaID"] for m in media] == [ids[3], ids[0]]
    assert http(project_url(sim, 77, "/media?mediaIds=1,abc")).status == 400


def test_bad_requests_are_400(sim: RunningSimulator) -> None:
    assert http(project_url(sim, "abc")).status == 400
    assert (
        http(f"{sim.api_url}/data", "POST", {"reportType": "OTHER", "projectId": 1}).status == 400
    )
    bad = {"reportType": "VIDEO_COLLABORATION", "projectId": "x"}
    assert http(f"{sim.api_url}/data", "POST", bad).status == 400


# Auth ---------------------------------------------------------------------------------------


def test_basic_auth_is_checked_but_not_on_health_or_admin(sim: RunningSimulator) -> None:
    assert http(project_url(sim, 1), auth=None).status == 401
    wrong = "Basic " + base64.b64encode(f"{SIMULATOR_USERNAME}:nope".encode()).decode()
    denied = http(project_url(sim, 1), auth=wrong)
    assert denied.status == 401 and "Basic" in denied.headers["WWW-Authenticate"]
    assert http(project_url(sim, 1)).status == 200
    assert http(f"{sim.origin}/health", auth=None).json()["status"] == "ok"
    assert http(f"{sim.api_url}/health", auth=None).status == 200
    assert http(f"{sim.origin}/_admin/stats", auth=None).status == 200


# Signed media URLs --------------------------------------------------------------------------


def _first_media(sim: RunningSimulator, project_id: int = 31337) -> dict[str, Any]:
    media: list[dict[str, Any]] = http(project_url(sim, project_id, "/media")).json()
    return media[0]


def test_media_bytes_are_deterministic_and_signed(sim: RunningSimulator) -> None:
    item = _first_media(sim)
    download = http(item["fullDownloadLink"], auth=None)
    assert download.status == 200
    expected = simdata.media_content(SIMULATOR_SEED, item["mediaID"], 64 * 1024)
    assert len(download.body) == 64 * 1024
    assert hashlib.sha256(download.body).digest() == hashlib.sha256(expected).digest()
    assert download.headers["Content-Type"].split(";")[0] in {
        "image/jpeg", "image/png", "image/heic", "video/mp4", "application/pdf"
    }  # fmt: skip

    tampered = item["fullDownloadLink"].replace("expires=", "expires=9")
    assert http(tampered, auth=None).status == 403
    unsigned = item["fullDownloadLink"].split("?")[0]
    assert http(unsigned, auth=None).status == 403
    other = item["fullDownloadLink"].replace(f"/{item['mediaID']}?", f"/{item['mediaID'] + 1}?")
    assert http(other, auth=None).status == 403  # the signature covers the path


def test_signed_urls_really_expire(sim: RunningSimulator) -> None:
    sim.set_faults(url_ttl_ms=400)
    item = _first_media(sim)
    assert http(item["fullDownloadLink"], auth=None).status == 200
    time.sleep(0.5)
    expired = http(item["fullDownloadLink"], auth=None)
    assert expired.status == 403 and b"expired" in expired.body

    sim.set_faults(url_ttl_ms=None, expired_urls=True)
    item = _first_media(sim)
    assert datetime.fromisoformat(item["expiresAt"]) < datetime.now(UTC)
    issued_expired = http(item["fullDownloadLink"], auth=None)
    assert issued_expired.status == 403 and b"expired" in issued_expired.body


# Faults -------------------------------------------------------------------------------------


def test_error_rates_and_retry_after(sim: RunningSimulator) -> None:
    sim.set_faults(error_rates={503: 1.0})
    assert http(project_url(sim, 1)).status == 503
    sim.set_faults(error_rates={429: 1.0}, retry_after_s=7)
    limited = http(project_url(sim, 1))
    assert limited.status == 429 and limited.headers["Retry-After"] == "7"
    sim.set_faults(error_rates={500: 0.5})
    statuses = Counter(http(project_url(sim, 1)).status for _ in range(200))
    assert 60 < statuses[500] < 140 and statuses[200] == 200 - statuses[500]


def test_fail_next_is_a_queue_then_normal_service(sim: RunningSimulator) -> None:
    sim.set_faults(fail_next=[502, 404])
    assert [http(project_url(sim, 1)).status for _ in range(3)] == [502, 404, 200]
    assert sim.simulator.faults.fail_next == []


def test_latency_with_jitter(sim: RunningSimulator) -> None:
    sim.set_faults(latency_ms=150, jitter_ms=50)
    started = time.monotonic()
    assert http(project_url(sim, 1)).status == 200
    assert 0.15 <= time.monotonic() - started < 2.0


def test_timeout_hangs_longer_than_the_client_waits(sim: RunningSimulator) -> None:
    sim.set_faults(timeout_rate=1.0, hang_s=10)
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        http(project_url(sim, 1), timeout=0.3)
    assert time.monotonic() - started < 2


def test_malformed_and_truncated_bodies(sim: RunningSimulator) -> None:
    sim.set_faults(fail_next=["malformed"])
    malformed = http(project_url(sim, 1))
    assert malformed.status == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    sim.set_faults(fail_next=["truncated"])
    with pytest.raises(Exception, match=r"IncompleteRead|incomplete|Remote end closed"):
        http(project_url(sim, 1))


def test_not_found_projects_by_list_and_by_stable_rate(sim: RunningSimulator) -> None:
    sim.set_faults(not_found_projects=["555"])
    assert http(project_url(sim, 555)).status == 404
    assert http(project_url(sim, 555, "/media")).status == 404
    assert http(project_url(sim, 556)).status == 200
    sim.set_faults(not_found_projects=[], not_found_rate=0.3)
    first = [http(project_url(sim, pid)).status for pid in range(100, 160)]
    again = [http(project_url(sim, pid)).status for pid in range(100, 160)]
    assert first == again and 5 < first.count(404) < 35


def test_down_drops_connections_and_health_says_so(sim: RunningSimulator) -> None:
    sim.set_faults(down=True)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        http(project_url(sim, 1))
    assert http(f"{sim.origin}/health").status == 503
    sim.set_faults(down=False)
    assert http(project_url(sim, 1)).status == 200


def test_faults_reach_media_only_when_asked(sim: RunningSimulator) -> None:
    item = _first_media(sim)
    sim.set_faults(error_rates={500: 1.0})
    assert http(item["fullDownloadLink"], auth=None).status == 200
    sim.set_faults(apply_to=["media"])
    assert http(item["fullDownloadLink"], auth=None).status == 500
    assert http(project_url(sim, 1)).status == 200
    sim.set_faults(error_rates={}, fail_next=["truncated"])
    with pytest.raises(Exception, match=r"IncompleteRead|incomplete"):
        http(item["fullDownloadLink"], auth=None)
    assert sim.stats.statuses["media_download"] == {200: 1, 500: 1, 0: 1}


def test_admin_endpoint_changes_replaces_clears_and_validates(sim: RunningSimulator) -> None:
    admin = f"{sim.origin}/_admin/faults"
    shown = http(admin, "POST", {"error_rates": {"503": 0.25}, "latency_ms": 5}).json()
    assert shown["error_rates"] == {"503": 0.25} and shown["latency_ms"] == 5
    shown = http(admin, "POST", {"jitter_ms": 2}).json()
    assert shown["latency_ms"] == 5 and shown["jitter_ms"] == 2
    shown = http(admin, "PUT", {"jitter_ms": 3}).json()
    assert shown["latency_ms"] == 0 and shown["error_rates"] == {}
    assert http(admin, "DELETE").json()["jitter_ms"] == 0
    invalid = http(admin, "POST", {"error_rates": {"200": 0.5}, "typo": 1})
    assert invalid.status == 400
    assert {p["knob"] for p in invalid.json()["problems"]} >= {"typo"}
    assert http(admin, "POST", {"timeout_rate": 2}).status == 400


def test_faults_given_at_start_and_restored_by_reset() -> None:
    from claimx_flow.lab.simulator import Faults, start_in_thread

    config = SimulatorConfig(faults=Faults(error_rates={418: 1.0}))
    with start_in_thread(config) as running:
        assert http(f"{running.api_url}/export/project/1", auth=None).status == 418
        running.set_faults(error_rates={})
        assert http(f"{running.api_url}/export/project/1", auth=None).status == 401
        assert http(f"{running.origin}/_admin/reset", "POST").json() == {"reset": True}
        assert http(f"{running.api_url}/export/project/1", auth=None).status == 418


# Counters -----------------------------------------------------------------------------------


def test_counters_per_endpoint_on_the_object_and_over_http(sim: RunningSimulator) -> None:
    http(project_url(sim, 1))
    http(project_url(sim, 1))
    http(project_url(sim, 1, "/media"))
    http(project_url(sim, 1), auth=None)
    body = {"reportType": "VIDEO_COLLABORATION", "projectId": 1}
    http(f"{sim.api_url}/data", "POST", body)
    http(f"{sim.origin}/health")
    assert sim.stats.requests == {"project": 3, "media": 1, "video_collaboration": 1}
    assert sim.stats.api_calls == 5
    over_http = http(f"{sim.origin}/_admin/stats").json()
    assert over_http["statuses"]["project"] == {"200": 2, "401": 1}
    assert over_http["api_calls"] == 5 and over_http["in_flight"] == 0
    http(f"{sim.origin}/_admin/reset", "POST")
    assert sim.stats.api_calls == 0


# Running it -----------------------------------------------------------------------------------


def test_runs_as_a_subprocess(tmp_path: Path) -> None:
    running = start_subprocess(
        SimulatorConfig(seed=SIMULATOR_SEED, password="p"), log_path=tmp_path / "sim.log"
    )
    try:
        auth = "Basic " + base64.b64encode(b"claimx-sim:p").decode()
        reply = http(f"{running.api_url}/export/project/9", auth=auth)
        assert reply.json() == simdata.project_response(SIMULATOR_SEED, 9)
    finally:
        running.stop()
    assert running.process.returncode is not None
    assert not running.healthy()


def test_port_in_use_is_a_clear_error() -> None:
    from claimx_flow.errors import StackError
    from claimx_flow.lab.simulator import start_in_thread

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(StackError, match="could not start"):
            start_in_thread(port=taken.getsockname()[1])


# Events -------------------------------------------------------------------------------------

START = datetime(2024, 5, 1, tzinfo=UTC)


def _events(plan: EventPlan) -> list[dict[str, Any]]:
    return [json.loads(line) for _, line in event_lines(plan)]


def _field(event: dict[str, Any], *names: str) -> Any:
    return next((event[name] for name in names if name in event), None)


def test_events_mix_key_styles_and_id_types_and_are_deterministic() -> None:
    plan = EventPlan(count=2000, projects=20, mix="mixed", seed=5, start=START)
    events = _events(plan)
    assert events == _events(plan)
    assert events != _events(EventPlan(count=2000, projects=20, mix="mixed", seed=6, start=START))
    keys = Counter(key for event in events for key in event)
    assert {"event_type", "eventType", "project_id", "projectId"} <= set(keys)
    assert {"ingested_at", "ingestedAt", "IngestionTime"} <= set(keys)
    assert 200 < keys["event_id"] + keys["eventId"] < 800
    project_ids = [_field(e, "project_id", "projectId") for e in events]
    assert {type(p) for p in project_ids} == {int, str}
    stamps = [_field(e, "ingested_at", "ingestedAt", "IngestionTime") for e in events]
    assert stamps[0] == "2024-05-01T00:00:00.000Z" and len(set(stamps)) == len(stamps)
    assert all(datetime.fromisoformat(s).tzinfo is not None for s in stamps)


def test_mixed_events_cover_every_type_and_refer_to_served_entities() -> None:
    events = _events(EventPlan(count=3000, projects=10, mix="mixed", seed=2, start=START))
    types = Counter(_field(e, "event_type", "eventType") for e in events)
    assert set(types) == set(MIXED_WEIGHTS)
    for event in events:
        project = int(_field(event, "project_id", "projectId"))
        assert 5_000_000 <= project < 5_000_010
        media = _field(event, "media_id", "mediaId")
        if media is not None:
            assert simdata.is_media_of(2, project, int(media))
        task = _field(event, "task_assignment_id", "taskAssignmentId")
        if task is not None:
            assert int(task) in simdata.task_assignment_ids(2, project)
        video = _field(event, "video_collaboration_id", "videoCollaborationId")
        if video is not None:
            assert int(video) == simdata.video_collaboration_id(project)
        mfn = _field(event, "master_file_name", "masterFileName")
        if mfn is not None:
            assert mfn == simdata.project_mfn(2, project)


def test_project_created_and_file_heavy_mixes() -> None:
    created = _events(EventPlan(count=50, projects=7, mix="project-created", start=START))
    assert {_field(e, "event_type", "eventType") for e in created} == {"PROJECT_CREATED"}
    assert len({str(_field(e, "project_id", "projectId")) for e in created}) == 7

    heavy = _events(EventPlan(count=600, projects=5, mix="file-heavy", start=START))
    assert {_field(e, "event_type", "eventType") for e in heavy} == {"PROJECT_FILE_ADDED"}
    bursts: list[list[dict[str, Any]]] = []
    for event in heavy:
        project = str(_field(event, "project_id", "projectId"))
        if not bursts or str(_field(bursts[-1][0], "project_id", "projectId")) != project:
            bursts.append([])
        bursts[-1].append(event)
    assert all(20 <= len(burst) <= 100 for burst in bursts[:-1])


def test_a_large_workload_is_written_in_full(tmp_path: Path) -> None:
    """Benchmarks generate big workloads; how fast is for `claimx bench`, not for a test."""
    from claimx_flow.lab.simulator.event_output import write_lines

    plan = EventPlan(count=200_000, projects=1000, mix="mixed", start=START)
    with (tmp_path / "events.jsonl").open("w") as out:
        written = write_lines(event_lines(plan), out)
    assert written == 200_000
    assert sum(1 for _ in (tmp_path / "events.jsonl").open()) == 200_000


def test_cli_writes_events_to_a_file_and_to_stdout(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    runner = CliRunner()
    args = ["simulate", "events", "-n", "250", "--mix", "file-heavy", "--seed", "3"]
    result = runner.invoke(app, [*args, "--output", str(target), "--start", "2024-05-01"])
    assert result.exit_code == 0, result.output
    lines = target.read_text().splitlines()
    assert len(lines) == 250 and all(json.loads(line) for line in lines)
    to_stdout = runner.invoke(app, [*args, "--start", "2024-05-01"])
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout.splitlines()[:250] == lines


def test_cli_produces_events_to_kafka(
    make_topic: Any, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = make_topic(partitions=2)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    args = ["simulate", "events", "-n", "300", "--projects", "4", "--topic", topic]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    received: list[Any] = []
    deadline = time.monotonic() + 30
    while len(received) < 300 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append(message)
    consumer.close()
    assert len(received) == 300
    for message in received:
        event = json.loads(message.value())
        assert message.key().decode() == str(_field(event, "project_id", "projectId"))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=0, max_value=10**12),
    st.sampled_from(["/media/5000000/5000000001", "/media/7/8"]),
)
def test_a_signed_link_is_what_urlencode_writes(issued: int, ttl: int, path: str) -> None:
    """Links are written by hand for speed; they must stay what ``urlencode`` would write, and
    still check as valid."""
    signer = UrlSigner(b"secret")
    link = signer.sign("http://127.0.0.1:1", path, ttl, issued)
    query = urlencode(
        {"systemDate": issued, "expires": ttl, "sig": signer.signature(path, issued, ttl)}
    )
    assert link == f"http://127.0.0.1:1{path}?{query}"
    assert signer.check(path, str(issued), str(ttl), query.rsplit("=", 1)[1], issued) in {
        UrlCheck.VALID,
        UrlCheck.EXPIRED,
    }
