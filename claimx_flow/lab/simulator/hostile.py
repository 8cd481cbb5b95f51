"""Hostile answers, on purpose: what a broken or malicious ClaimX could send for one entity.

Faults in ``faults.py`` hit requests at random or in a queue; hostility is chosen per entity,
so a test knows exactly which project, task assignment or media file was answered with poison
and which were answered well. It is one typed model, ``Hostility``, carried in
``Faults.hostile`` (so ``set_faults(hostile=...)`` and ``/_admin/faults`` set it like any
knob), with one table per thing that can be poisoned:

- ``projects``, ``media_lists``, ``task_assignments``, ``video_reports``: a whole API answer
  (by project id, project id, assignment id and project id);
- ``media_items``: one item of a media list (by media id), the rest of the list left alone;
- ``media_urls``: an item's ``fullDownloadLink`` (by media id);
- ``media_bodies``: the media file's own answer (by media id).

Each entry names a kind and a ``variant``: which fields are spoiled, and with what, is drawn
from ``(seed, kind, entity, variant)``, so the same entry always gives the same bytes and a
property test explores by drawing variants. Kinds (``ANSWER_KINDS`` and friends):

answers and items:
  ``wrong_types``: a string where a number is, an object where a list is, and so on;
  ``empty_fields``: every text field ``""`` and every list empty (key fields kept);
  ``empty_keys``: the entity's key fields ``""`` (``projectId``, ``mediaID``, ``userName`` …);
  ``huge_fields``: text fields of ``huge_chars`` characters, numbers far beyond any column;
  ``edge_values``: calendar and integer edges, NaN and Infinity, times in microseconds;
  ``lone_surrogates``: ``"\\ud800"`` (valid JSON, no UTF-8 form) in e-mails, team members'
  user names, descriptions and names;
  ``not_an_object``: a JSON scalar where the object (or the item) is;
answers only:
  ``truncated_json`` (the honest answer cut at a seeded place, status 200), ``html`` (an
  error page, status 200), ``deep_nesting`` (JSON nested 100,000 deep), ``empty_body`` (status
  200, no bytes);
honest shapes, chosen per entity like the poison (``HONEST_KINDS``):
  ``no_contacts``: a project answered without team members or customer e-mails, as a new
  project is (other answers are left as they are);
media URLs:
  ``unclosed_ipv6`` (``http://[::1/x``), ``port_out_of_range`` (99999, 65536 + the real port …),
  ``bad_scheme`` (``ftp:``, ``file:``, ``javascript:`` …), ``no_scheme``, ``empty``,
  ``not_a_string``, ``control_characters``, ``lone_surrogate``, ``huge``, ``credentials``,
  ``host_not_allowed``, ``look_alike_host``;
media bodies:
  ``cut_short`` (a ``Content-Length`` never delivered), ``chunked_cut`` (chunked, cut before
  the last chunk), ``empty``, ``html``, ``gzip_claimed`` (``Content-Encoding: gzip`` on raw
  bytes), ``overlong`` (more bytes than announced), ``not_found`` (404), ``gone`` (410),
  ``server_error`` (500), ``throttled`` (503), ``redirect`` (302 to the metadata address),
  ``odd_encoding`` (the whole file, with a ``Content-Encoding`` of bytes that are not UTF-8);
honest bodies of a rarer shape (``HONEST_BODIES``):
  ``trickled``: the whole file, its length announced, in 1,100 to 1,600 pieces sent one at a
  time with a pause between, as a slow or congested host sends it: a client that reads each
  piece as it comes holds more pieces than one vectored write takes (``IOV_MAX``, 1,024);
  ``odd_headers``: the whole file, its ``Content-Type`` and a header of the host's own made of
  bytes that are not UTF-8.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from claimx_flow.lab.simulator import data

ItemKind = Literal[
    "wrong_types",
    "empty_fields",
    "empty_keys",
    "huge_fields",
    "edge_values",
    "lone_surrogates",
    "not_an_object",
]
AnswerKind = (
    ItemKind | Literal["truncated_json", "html", "deep_nesting", "empty_body", "no_contacts"]
)
UrlKind = Literal[
    "unclosed_ipv6",
    "port_out_of_range",
    "bad_scheme",
    "no_scheme",
    "empty",
    "not_a_string",
    "control_characters",
    "lone_surrogate",
    "huge",
    "credentials",
    "host_not_allowed",
    "look_alike_host",
]
BodyKind = Literal[
    "cut_short",
    "chunked_cut",
    "empty",
    "html",
    "gzip_claimed",
    "overlong",
    "not_found",
    "gone",
    "server_error",
    "throttled",
    "redirect",
    "odd_encoding",
    "trickled",
    "odd_headers",
]
Endpoint = Literal["project", "media", "media_item", "task_assignment", "video_collaboration"]

ITEM_KINDS: tuple[str, ...] = get_args(ItemKind)
BODY_ONLY_KINDS: tuple[str, ...] = ("truncated_json", "html", "deep_nesting", "empty_body")
ANSWER_KINDS: tuple[str, ...] = (*ITEM_KINDS, *BODY_ONLY_KINDS)
"""The poisoned answers."""
HONEST_KINDS: tuple[str, ...] = ("no_contacts",)
"""Answers of an honest but rarer shape, which a batch's neighbours may need to meet."""
URL_KINDS: tuple[str, ...] = get_args(UrlKind)
BODY_KINDS: tuple[str, ...] = get_args(BodyKind)
HONEST_BODIES: tuple[str, ...] = ("trickled", "odd_headers")
"""Bodies that are the whole file, served in an honest but rarer way: it must land."""
ODD_HEADER_BYTES = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\xfe\xfe")
"""Bytes no UTF-8 decoder takes: aiohttp reads them as lone surrogates."""
TRICKLE_PIECES = (1_100, 1_600)
TRICKLE_PAUSE_S = 0.001
"""Long enough for an idle client to read each piece alone; 1,600 pieces take about 2 s."""

DEEP_NESTING = 100_000
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server returned an invalid response.</p>"
    b"</body></html>"
)
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"

# The fields that identify an entity, by endpoint ("a.b" is a path; "[]" any list item).
KEY_FIELDS: dict[Endpoint, tuple[str, ...]] = {
    "project": (
        "project.projectId",
        "projectId",
        "teamMembers[].userName",
        "project.customerInformation.emails[].emailAddress",
        "customerInformation.emails[].emailAddress",
    ),
    "media": ("[].mediaID",),
    "media_item": ("mediaID",),
    "task_assignment": ("assignmentId", "customTask.taskId", "externalLinkData.linkId"),
    "video_collaboration": ("videoCollaborationId", "claimId", "[].videoCollaborationId"),
}
# Text that reaches a column or a key: where an unencodable string must be noticed.
STORED_TEXT: dict[Endpoint, tuple[str, ...]] = {
    "project": (
        "project.customerInformation.emails[].emailAddress",
        "customerInformation.emails[].emailAddress",
        "teamMembers[].userName",
        "project.lossDescription",
        "lossDescription",
        "project.customerInformation.firstName",
        "customerInformation.firstName",
        "project.address.city",
        "address.city",
    ),
    "media": ("[].mediaDescription", "[].mediaName"),
    "media_item": ("mediaDescription", "mediaName", "mediaComment"),
    "task_assignment": ("taskName", "assignor", "customTask.description", "externalLinkData.email"),
    "video_collaboration": ("claimRepFullName", "emailUserName", "[].claimRepFullName"),
}
_LONE = ("\ud800", "\udfff", "\udc00\ud800", "a\ud83d", "\ud83d")
_EDGE_NUMBERS: tuple[Any, ...] = (
    2**63,
    -(2**63) - 1,
    2**31,
    10**30,
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    -0.0,
    0.5,
)
_EDGE_TIMES: tuple[Any, ...] = (
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "2024-02-30T00:00:00Z",
    "2024-01-01T25:00:00Z",
    1_700_000_000_000_000,  # microseconds sent as milliseconds
    -62_135_596_800_001,  # a millisecond before year 1
    253_402_300_800_000,  # the first millisecond of year 10000
    "",
)


class _Chosen(BaseModel):
    """A kind of poison and which variant of it; a bare kind name is accepted too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: int = Field(0, ge=0)
    """Which fields are spoiled, and with what, for this kind (drawn from the seed)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class AnswerPoison(_Chosen):
    kind: AnswerKind


class ItemPoison(_Chosen):
    kind: ItemKind


class UrlPoison(_Chosen):
    kind: UrlKind


class BodyPoison(_Chosen):
    kind: BodyKind


class Hostility(BaseModel):
    """Which entities get a hostile answer, and which; nothing by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    projects: dict[str, AnswerPoison] = {}
    """``GET /export/project/{id}``, by project id."""
    media_lists: dict[str, AnswerPoison] = {}
    """``GET /export/project/{id}/media`` as a whole, by project id."""
    media_items: dict[str, ItemPoison] = {}
    """One item of a media list, by media id."""
    media_urls: dict[str, UrlPoison] = {}
    """An item's ``fullDownloadLink``, by media id."""
    media_bodies: dict[str, BodyPoison] = {}
    """``GET /media/{project}/{media}``, by media id."""
    task_assignments: dict[str, AnswerPoison] = {}
    """``GET /customTasks/assignment/{id}``, by assignment id."""
    video_reports: dict[str, AnswerPoison] = {}
    """``POST /data`` (video collaboration report), by project id."""
    huge_chars: int = Field(100_000, ge=1, le=16 * 1024 * 1024)
    """Length of a huge text field (and the padding of a huge URL)."""

    @field_validator(
        "projects",
        "media_lists",
        "media_items",
        "media_urls",
        "media_bodies",
        "task_assignments",
        "video_reports",
        mode="before",
    )
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        """Ids arrive as numbers or strings, as everywhere in ClaimX."""
        if isinstance(value, dict):
            return {str(key): poison for key, poison in value.items()}
        return value

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.projects,
                self.media_lists,
                self.media_items,
                self.media_urls,
                self.media_bodies,
                self.task_assignments,
                self.video_reports,
            )
        )


def _rng(seed: int, kind: str, entity_id: object, variant: int) -> random.Random:
    return random.Random(f"{seed}:hostile:{kind}:{entity_id}:{variant}")


# Spoiling a JSON document ---------------------------------------------------------------------

JsonPath = tuple[str | int, ...]


def _leaves(document: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Every value in ``document`` with its path, containers before their contents."""
    yield path, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _leaves(value, (*path, index))


def _pattern(path: JsonPath) -> str:
    """``("project", "emails", 0, "emailAddress")`` → ``project.emails[].emailAddress``."""
    text = ""
    for part in path:
        text += "[]" if isinstance(part, int) else ("." if text else "") + part
    return text


def _set(document: Any, path: JsonPath, value: Any) -> Any:
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


def _matching(document: Any, patterns: tuple[str, ...]) -> list[JsonPath]:
    wanted = set(patterns)
    return [path for path, _ in _leaves(document) if path and _pattern(path) in wanted]


def _wrong_type(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return rng.choice(["maybe", 2, {"value": True}])
    if isinstance(value, int | float):
        return rng.choice(["12abc", "", {"amount": value}, [value], True])
    if isinstance(value, str):
        return rng.choice([12345, -1, [value], {"text": value}, False, 1.5])
    if isinstance(value, list):
        return rng.choice([{"items": value}, "list", 0, {}])
    if isinstance(value, dict):
        return rng.choice([[value], [], "object", 7])
    return rng.choice([{}, [], "null", 0])


def _incompressible(rng: random.Random, chars: int) -> str:
    """URL-safe text that no codec shrinks: a huge link must stay huge on the wire (a run of
    one letter compresses under any message limit)."""
    return base64.urlsafe_b64encode(rng.randbytes(chars * 3 // 4 + 3)).decode()[:chars]


def _huge(value: Any, rng: random.Random, chars: int) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return rng.choice([10**30, -(10**30), 1e300, 2**64])
    if isinstance(value, str):
        unit = rng.choice(["A", "é", "漢", "😀", "\u202e", "x y "])
        return (unit * (chars // len(unit) + 1))[:chars]
    return value


def _edge(path: JsonPath, value: Any, rng: random.Random) -> Any:
    if _is_time(path):
        return rng.choice(_EDGE_TIMES)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return rng.choice(_EDGE_NUMBERS)
    return value


def _is_time(path: JsonPath) -> bool:
    name = str(path[-1]).lower() if path else ""
    return "date" in name or name.endswith(("at", "session"))


def _has_edges(path: JsonPath, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number or (_is_time(path) and isinstance(value, str | None))


def _with_surrogate(value: Any, rng: random.Random) -> str:
    text = value if isinstance(value, str) else str(value)
    lone = rng.choice(_LONE)
    cut = rng.randint(0, len(text))
    return rng.choice([lone, text[:cut] + lone + text[cut:]])


def spoil(
    document: Any, kind: ItemKind, endpoint: Endpoint, rng: random.Random, huge_chars: int
) -> Any:
    """A spoiled deep copy of ``document`` (the simulator's answers are shared: never mutated)."""
    document = copy.deepcopy(document)
    everything = [path for path, _ in _leaves(document) if path]
    if kind == "not_an_object":
        return rng.choice([None, 0, "ok", True, "null", 3.5])
    if kind == "empty_keys":
        for path in _matching(document, KEY_FIELDS[endpoint]):
            _set(document, path, "")
        return document
    if kind == "lone_surrogates":
        targets = _matching(document, STORED_TEXT[endpoint]) or everything
        for path in rng.sample(targets, rng.randint(1, min(3, len(targets)))):
            _set(document, path, _with_surrogate(_get(document, path), rng))
        return document
    if kind == "empty_fields":
        keys = set(_matching(document, KEY_FIELDS[endpoint]))
        for path, value in list(_leaves(document)):
            if path and path not in keys and _still_there(document, path):
                if isinstance(value, str):
                    _set(document, path, "")
                elif isinstance(value, list):
                    _set(document, path, [])
        return document
    if kind == "edge_values":  # numbers and times: the values that have edges
        everything = [path for path in everything if _has_edges(path, _get(document, path))]
    if not everything:
        return document
    chosen = rng.sample(everything, rng.randint(1, min(4, len(everything))))
    for path in chosen:
        if not _still_there(document, path):
            continue  # inside a value an earlier choice replaced
        value = _get(document, path)
        if kind == "wrong_types":
            _set(document, path, _wrong_type(value, rng))
        elif kind == "huge_fields":
            _set(document, path, _huge(value, rng, huge_chars))
        elif kind == "edge_values":
            _set(document, path, _edge(path, value, rng))
    if kind == "huge_fields":  # and one text field huge for sure
        texts = [p for p, v in _leaves(document) if p and isinstance(v, str)]
        if texts:
            path = rng.choice(texts)
            _set(document, path, _huge(_get(document, path), rng, huge_chars))
    return document


def _get(document: Any, path: JsonPath) -> Any:
    for part in path:
        document = document[part]
    return document


def _still_there(document: Any, path: JsonPath) -> bool:
    try:
        _get(document, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


# Answers ------------------------------------------------------------------------------------


def answer(
    seed: int,
    endpoint: Endpoint,
    entity_id: object,
    document: Any,
    poison: AnswerPoison,
    huge_chars: int,
    wrap: Callable[[Any], Any] = lambda document: document,
) -> web.Response:
    """The hostile answer to one API call whose honest answer is ``wrap(document)``: fields
    are spoiled inside ``document``, the response shape's wrapper stays as it is."""
    kind = poison.kind
    rng = _rng(seed, kind, f"{endpoint}:{entity_id}", poison.variant)
    if kind == "html":
        return web.Response(body=HTML_PAGE, status=200, content_type="text/html")
    if kind == "empty_body":
        return web.Response(body=b"", status=200, content_type="application/json")
    if kind == "deep_nesting":
        depth = DEEP_NESTING + rng.randrange(1000)
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return web.Response(
            body=opener * depth + b"1" + closer * depth, content_type="application/json"
        )
    if kind == "no_contacts":
        return json_answer(wrap(_without_contacts(document)))
    if kind == "truncated_json":  # the honest answer's bytes, cut short
        body = data.answer_bytes(wrap(document))
        cut = rng.randint(1, max(1, len(body) - 1))
        return web.Response(body=body[:cut], status=200, content_type="application/json")
    return json_answer(wrap(spoil(document, kind, endpoint, rng, huge_chars)))


def _without_contacts(document: Any) -> Any:
    """A project answer with no team and no customer e-mail (a copy: answers are shared)."""
    if not isinstance(document, dict) or "teamMembers" not in document:
        return document
    document = copy.deepcopy(document)
    document["teamMembers"] = []
    project = document.get("project", document)
    if isinstance(project.get("customerInformation"), dict):
        project["customerInformation"]["emails"] = []
    return document


def json_answer(document: Any) -> web.Response:
    """JSON as Python writes it: lone surrogates as ``\\ud800`` escapes, NaN as ``NaN``."""
    return web.Response(body=json.dumps(document).encode(), content_type="application/json")


def spoil_item(
    seed: int, media_id: object, item: dict[str, Any], poison: ItemPoison, huge_chars: int
) -> Any:
    """One media item, spoiled (the list around it is left alone)."""
    rng = _rng(seed, poison.kind, f"media_item:{media_id}", poison.variant)
    return spoil(item, poison.kind, "media_item", rng, huge_chars)


# Media URLs ---------------------------------------------------------------------------------


def media_url(
    seed: int, media_id: object, good_url: str, origin_port: int, poison: UrlPoison, huge: int
) -> Any:
    """What the media list offers as ``fullDownloadLink`` instead of ``good_url``."""
    kind, rng = poison.kind, _rng(seed, poison.kind, f"media_url:{media_id}", poison.variant)
    scheme, _, rest = good_url.partition("://")
    hostport, _, tail = rest.partition("/")
    host = hostport.rsplit(":", 1)[0]
    options: dict[str, Callable[[], Any]] = {
        "unclosed_ipv6": lambda: rng.choice(
            [f"http://[::1/{tail}", f"http://[::1:{origin_port}/{tail}", "http://[/x", "http://]/"]
        ),
        "port_out_of_range": lambda: (
            f"{scheme}://{host}:{rng.choice(_bad_ports(origin_port))}/{tail}"
        ),
        "bad_scheme": lambda: rng.choice(
            [
                f"ftp://{hostport}/{tail}",
                "file:///etc/passwd",
                "javascript:alert(1)",
                f"gopher://{hostport}/_GET%20/",
                "data:text/plain;base64,SGVsbG8=",
                f"HTTP+unix://{hostport}/{tail}",
            ]
        ),
        "no_scheme": lambda: rng.choice(
            [f"//{hostport}/{tail}", f"{hostport}/{tail}", f"/{tail}", tail]
        ),
        "empty": lambda: rng.choice(["", " ", "\t"]),
        "not_a_string": lambda: rng.choice([12345, {"href": good_url}, [good_url], True, 0.5]),
        "control_characters": lambda: rng.choice(
            [
                good_url + "\r\nX-Injected: 1",
                good_url.replace("/media/", "/me\x00dia/"),
                " " + good_url + "\n",
                good_url.replace("://", ":// "),
            ]
        ),
        "lone_surrogate": lambda: good_url.replace("/media/", "/media/\ud800"),
        "huge": lambda: good_url + "&pad=" + _incompressible(rng, max(huge, 9000)),
        "credentials": lambda: f"{scheme}://user:secret@{hostport}/{tail}",
        "host_not_allowed": lambda: rng.choice(
            [
                METADATA_URL,
                f"http://example.com/{tail}",
                f"http://{host}.evil.example:{origin_port}/{tail}",
                f"http://10.0.0.1:{origin_port}/{tail}",
            ]
        ),
        "look_alike_host": lambda: rng.choice(
            [
                f"{scheme}://\u217cocalhost:{origin_port}/{tail}",  # small roman numeral fifty
                f"{scheme}://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{origin_port}/{tail}",
                f"{scheme}://127.0.0.1\u3002:{origin_port}/{tail}",  # ideographic full stop
                f"{scheme}://0x7f000001:{origin_port}/{tail}",
            ]
        ),
    }
    return options[kind]()


def _bad_ports(port: int) -> list[int]:
    """Ports no URL may have, two of them the real port once wrapped at 16 or 32 bits."""
    return [99999, 65536 + port, 0, 2**32 + port, -1]


# Media bodies -------------------------------------------------------------------------------


async def media_body(
    request: web.Request,
    seed: int,
    media_id: object,
    content: bytes,
    content_type: str,
    poison: BodyPoison,
) -> web.StreamResponse:
    """The hostile answer to a media download whose honest body is ``content``."""
    kind, rng = poison.kind, _rng(seed, poison.kind, f"media_body:{media_id}", poison.variant)
    statuses = {"not_found": 404, "gone": 410, "server_error": 500, "throttled": 503}
    if kind in statuses:
        return web.Response(status=statuses[kind], text=f"<Error><Code>{kind}</Code></Error>")
    if kind == "redirect":
        return web.Response(status=302, headers={"Location": METADATA_URL})
    if kind == "empty":
        return web.Response(body=b"", content_type=content_type)
    if kind == "html":
        return web.Response(body=HTML_PAGE, content_type="text/html")
    if kind == "gzip_claimed":
        return web.Response(
            body=content, content_type=content_type, headers={"Content-Encoding": "gzip"}
        )
    if kind == "trickled":
        return await _trickle(request, content, content_type, rng.randint(*TRICKLE_PIECES))
    if kind in ("odd_encoding", "odd_headers"):
        odd = rng.choice(ODD_HEADER_BYTES)
        headers = [(b"Content-Type", content_type.encode() + b"; name=" + odd)]
        headers.append((b"X-Host-Note", odd + b" note"))
        if kind == "odd_encoding":
            headers.append((b"Content-Encoding", odd + rng.choice([b"gzip", b"", b"identity"])))
        return _raw_answer(request, headers, content)
    cut = rng.randint(1, max(1, len(content) - 1))
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    if kind == "cut_short":
        response.content_length = len(content)
    elif kind == "overlong":
        response.content_length = cut
    else:  # chunked_cut
        response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(content[:cut])
    transport = request.transport
    if kind == "overlong" and transport is not None:
        transport.write(content[cut:])  # past the announced end, outside the HTTP framing
    if transport is not None:
        transport.close()
    return response


def _raw_answer(
    request: web.Request, headers: list[tuple[bytes, bytes]], body: bytes
) -> web.StreamResponse:
    """A 200 with ``body`` and ``headers`` written as they are: aiohttp's own writer sends
    only what UTF-8 encodes. The connection is then closed, and the response aiohttp gets back
    is never sent."""
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    length = f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
    transport = request.transport
    if transport is not None:
        transport.write(b"HTTP/1.1 200 OK\r\n" + head + length + b"\r\n" + body)
        transport.close()
    return web.StreamResponse()


async def _trickle(
    request: web.Request, content: bytes, content_type: str, pieces: int
) -> web.StreamResponse:
    """``content`` whole, in ``pieces`` writes (one a byte, if it is shorter), each followed by
    a pause."""
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    response.content_length = len(content)
    await response.prepare(request)
    pieces = max(1, min(pieces, len(content)))
    bounds = [len(content) * index // pieces for index in range(pieces + 1)]
    for start, end in itertools.pairwise(bounds):
        await response.write(content[start:end])
        await asyncio.sleep(TRICKLE_PAUSE_S)
    await response.write_eof()
    return response


def served_kind(poison: AnswerPoison | ItemPoison | UrlPoison | BodyPoison) -> str:
    """How the stats count one hostile answer: ``hostile:<kind>``."""
    return f"hostile:{poison.kind}"
