"""The simulator's hostile mode over real HTTP: each kind of poison is what it says, only the
chosen entity gets it, the same entry always gives the same bytes, and it is set and checked
like every other fault knob."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pytest

from claimx_flow.lab.simulator import Faults, Hostility, RunningSimulator
from claimx_flow.lab.simulator import data as sim_data
from claimx_flow.lab.simulator.hostile import (
    ANSWER_KINDS,
    BODY_KINDS,
    DEEP_NESTING,
    TRICKLE_PAUSE_S,
    TRICKLE_PIECES,
    URL_KINDS,
    AnswerPoison,
)
from tests.simulator_fixtures import SIMULATOR_PASSWORD, SIMULATOR_SEED, SIMULATOR_USERNAME

AUTH = "Basic " + base64.b64encode(f"{SIMULATOR_USERNAME}:{SIMULATOR_PASSWORD}".encode()).decode()
PROJECT, NEIGHBOUR = 7_500_001, 7_500_002
MEDIA = sim_data.media_ids(SIMULATOR_SEED, PROJECT)


def get(url: str, body: Any = None) -> tuple[int, str, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Authorization": AUTH, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def raw_get(url: str) -> tuple[int, dict[str, str], bytes, str | None]:
    """One GET that follows nothing and reports a body cut short instead of raising."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", f"{parts.path}?{parts.query}")
    response = connection.getresponse()
    headers = {k.lower(): v for k, v in response.getheaders()}
    try:
        body, problem = response.read(), None
    except http.client.IncompleteRead as exc:
        body, problem = exc.partial, "incomplete"
    connection.close()
    return response.status, headers, body, problem


def answers(sim: RunningSimulator) -> dict[str, tuple[int, str, bytes]]:
    base = f"{sim.api_url}"
    assignment = sim_data.task_assignment_ids(SIMULATOR_SEED, PROJECT)[0]
    report = {"reportType": "VIDEO_COLLABORATION", "projectId": PROJECT}
    return {
        "project": get(f"{base}/export/project/{PROJECT}"),
        "media": get(f"{base}/export/project/{PROJECT}/media"),
        "task": get(f"{base}/customTasks/assignment/{assignment}?full=true"),
        "video": get(f"{base}/data", report),
    }


def poison_everything(sim: RunningSimulator, kind: str, variant: int = 0) -> None:
    poison = {"kind": kind, "variant": variant}
    assignment = sim_data.task_assignment_ids(SIMULATOR_SEED, PROJECT)[0]
    sim.set_faults(
        hostile={
            "projects": {PROJECT: poison},
            "media_lists": {PROJECT: poison},
            "task_assignments": {assignment: poison},
            "video_reports": {PROJECT: poison},
            "huge_chars": 5000,
        }
    )


def strings(document: Any) -> list[str]:
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [s for value in document.values() for s in strings(value)]
    if isinstance(document, list):
        return [s for value in document for s in strings(value)]
    return []


def unsigned(body: bytes) -> Any:
    """A media list without what changes with the time of the answer (links and expiry)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v) for k, v in value.items() if k not in ("fullDownloadLink", "expiresAt")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(body))


def unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@pytest.mark.parametrize("kind", ANSWER_KINDS)
def test_each_answer_kind_is_what_it_says_on_every_endpoint(
    sim: RunningSimulator, kind: str
) -> None:
    honest = answers(sim)
    poison_everything(sim, kind, variant=3)
    for endpoint, (status, content_type, body) in answers(sim).items():
        where = f"{kind} on {endpoint}"
        assert status == 200, where
        assert body != honest[endpoint][2], where
        if kind == "html":
            assert content_type.startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
            continue
        if kind == "empty_body":
            assert body == b"", where
            continue
        if kind == "truncated_json":
            if endpoint != "media":  # media links are signed with the time of the answer
                assert honest[endpoint][2].startswith(body), where
            with pytest.raises(json.JSONDecodeError):
                json.loads(body)
            continue
        if kind == "deep_nesting":
            assert len(body) > 2 * DEEP_NESTING, where
            with pytest.raises(RecursionError):
                json.loads(body)
            continue
        document = json.loads(body)  # the rest are valid JSON, as Python writes it
        texts = strings(document)
        if kind == "lone_surrogates":
            assert any(unencodable(text) for text in texts), where
        if kind == "huge_fields":
            assert max(map(len, texts)) >= 5000, where
        if kind == "empty_fields":
            assert "" in texts, where
        if kind == "empty_keys":
            key = {"project": '"projectId": ""', "media": '"mediaID": ""'}.get(endpoint)
            assert key is None or key.encode() in body, where


def test_a_project_without_contacts_is_the_honest_answer_less_its_team_and_emails(
    sim: RunningSimulator,
) -> None:
    honest = {name: json.loads(body) for name, (_, _, body) in answers(sim).items()}
    honest_media = unsigned(answers(sim)["media"][2])
    poison_everything(sim, "no_contacts", variant=5)
    found = answers(sim)
    project = json.loads(found["project"][2])
    assert project["data"]["teamMembers"] == [] != honest["project"]["data"]["teamMembers"]
    emails = project["data"]["project"]["customerInformation"]["emails"]
    assert emails == [] != honest["project"]["data"]["project"]["customerInformation"]["emails"]
    project["data"]["teamMembers"] = honest["project"]["data"]["teamMembers"]
    project["data"]["project"]["customerInformation"]["emails"] = honest["project"]["data"][
        "project"
    ]["customerInformation"]["emails"]
    assert project == honest["project"]  # and nothing else changed
    for endpoint in ("task", "video"):  # answers without contacts are left as they are
        assert json.loads(found[endpoint][2]) == honest[endpoint], endpoint
    assert unsigned(found["media"][2]) == honest_media
    assert sim.stats.faults["hostile:no_contacts"] >= 4


def test_only_the_chosen_entities_are_poisoned_and_the_same_entry_gives_the_same_bytes(
    sim: RunningSimulator,
) -> None:
    neighbour = f"{sim.api_url}/export/project/{NEIGHBOUR}"
    honest = get(neighbour)
    poison_everything(sim, "wrong_types", variant=11)
    first = answers(sim)
    assert get(neighbour) == honest  # the project beside it is answered as ever
    again = answers(sim)
    for endpoint in ("project", "task", "video"):
        assert again[endpoint] == first[endpoint], endpoint
    assert unsigned(again["media"][2]) == unsigned(first["media"][2])
    poison_everything(sim, "wrong_types", variant=12)
    assert answers(sim)["project"] != first["project"]  # another variant, other fields
    sim.set_faults(hostile={})
    assert answers(sim)["project"][2] != first["project"][2]
    assert sim.stats.faults["hostile:wrong_types"] >= 8


def test_media_items_and_links_are_poisoned_one_by_one(sim: RunningSimulator) -> None:
    item, linked, plain = MEDIA[0], MEDIA[1], MEDIA[2]
    url = f"{sim.api_url}/export/project/{PROJECT}/media?mediaIds={item},{linked},{plain}"
    honest = {i["mediaID"]: i for i in json.loads(get(url)[2])}
    for kind in URL_KINDS:
        sim.set_faults(
            hostile={"media_items": {item: "lone_surrogates"}, "media_urls": {linked: kind}}
        )
        items = json.loads(get(url)[2])
        by_id = {i["mediaID"]: i for i in items if isinstance(i, dict)}
        link = by_id[linked]["fullDownloadLink"]
        assert link != honest[linked]["fullDownloadLink"], kind
        assert by_id[plain]["mediaDescription"] == honest[plain]["mediaDescription"]
        assert any(unencodable(text) for text in strings(by_id[item])), kind
        if kind == "not_a_string":
            assert not isinstance(link, str)
        elif kind == "lone_surrogate":
            assert unencodable(link)
        elif kind == "huge":
            assert len(link) > 8192
        elif kind == "empty":
            assert link.strip() == ""
        elif kind == "credentials":
            assert "user:secret@" in link
        elif kind == "unclosed_ipv6":
            assert "[" in link and "]" not in link.split("?")[0].split("[", 1)[1]
        elif kind == "port_out_of_range":
            port = link.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
            assert not 0 < int(port) < 65536
        elif kind == "bad_scheme":
            assert not link.lower().startswith(("http://", "https://"))


@pytest.mark.parametrize("kind", BODY_KINDS)
def test_each_media_body_kind_is_what_it_says(sim: RunningSimulator, kind: str) -> None:
    media_id = MEDIA[3]
    listing = json.loads(
        get(f"{sim.api_url}/export/project/{PROJECT}/media?mediaIds={media_id}")[2]
    )
    link = listing[0]["fullDownloadLink"]
    content = sim_data.media_content(SIMULATOR_SEED, media_id, sim.simulator.config.media_bytes)
    sim.set_faults(hostile={"media_bodies": {media_id: {"kind": kind, "variant": 5}}})
    started = time.monotonic()
    status, headers, body, problem = raw_get(link)
    elapsed = time.monotonic() - started
    expected_status = {
        "not_found": 404,
        "gone": 410,
        "server_error": 500,
        "throttled": 503,
        "redirect": 302,
    }.get(kind, 200)
    assert status == expected_status
    if kind == "cut_short":
        assert problem == "incomplete" and content.startswith(body) and len(body) < len(content)
        assert headers["content-length"] == str(len(content))
    elif kind == "chunked_cut":
        assert problem == "incomplete" and headers.get("transfer-encoding") == "chunked"
    elif kind == "overlong":
        assert int(headers["content-length"]) < len(content) and content.startswith(body)
    elif kind == "empty":
        assert body == b""
    elif kind == "html":
        assert headers["content-type"].startswith("text/html")
    elif kind == "gzip_claimed":
        assert headers["content-encoding"] == "gzip" and body == content
    elif kind == "redirect":
        assert headers["location"].startswith("http://169.254.169.254/")
    elif kind in ("odd_encoding", "odd_headers"):  # http.client reads header bytes as Latin-1
        odd = [headers["content-type"], headers["x-host-note"]]
        if kind == "odd_encoding":
            odd.append(headers["content-encoding"])
        else:
            assert "content-encoding" not in headers
        assert all(
            unencodable(value.encode("latin-1").decode("utf-8", "surrogateescape")) for value in odd
        )
        assert body == content and problem is None
    elif kind == "trickled":  # the whole file, in at least 1,100 pieces with a pause after each
        assert body == content and headers["content-length"] == str(len(content))
        assert problem is None and elapsed >= TRICKLE_PIECES[0] * TRICKLE_PAUSE_S * 0.9
    sim.set_faults(hostile={})
    assert raw_get(link)[2] == content  # and the honest file again


def test_hostility_is_a_validated_fault_knob(sim: RunningSimulator) -> None:
    admin = f"{sim.origin}/_admin/faults"
    shown = json.loads(
        get_admin(admin, "POST", {"hostile": {"projects": {"5": "html"}, "media_bodies": {}}})
    )
    assert shown["hostile"]["projects"] == {"5": {"kind": "html", "variant": 0}}
    assert get(f"{sim.api_url}/export/project/5")[1].startswith("text/html")
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_admin(admin, "POST", {"hostile": {"projects": {"5": "teapot"}}})
    assert refused.value.code == 400
    with pytest.raises(urllib.error.HTTPError):
        get_admin(admin, "POST", {"hostile": {"media_urls": {"1": "html"}}})  # not a URL kind
    assert (
        Faults(hostile=Hostility(projects={5: AnswerPoison(kind="html")}))
        .hostile.projects["5"]
        .kind
        == "html"
    )
    sim.reset()
    assert sim.simulator.faults.hostile.empty


def get_admin(url: str, method: str, body: Any) -> bytes:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())
