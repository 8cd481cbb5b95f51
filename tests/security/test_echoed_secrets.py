"""An API that echoes the password it was sent, in the forms servers write it, where the
error's 200-character snippet cuts.

The password is generated (quotes, backslashes, ``%``, ``+``, spaces, any script), wrapped in
a marker at both ends, and a real HTTP server on loopback answers 500 with it: as sent,
JSON-escaped, percent- or form-encoded, or as the bare Basic token, after padding that puts it
across the snippet's cut. Nothing of it, not even the head the cut would leave, may reach the
error an operator sees (``claimx api check`` prints it) or the DLQ headers the stage writes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimx_flow.models import FailureInfo
from tests.security import hostile
from tests.security.test_api_responses import BAD, GOOD, api_settings_for, enrich, task

MARK = "Zq9"
"""At both ends of every password: a cut that leaves the password's head leaves this."""
USER = "claimx-user"

ECHOES: dict[str, Callable[[str], str]] = {
    "as sent": lambda password: password,
    "JSON-escaped": lambda password: json.dumps({"password": password}),
    "percent-encoded": lambda password: "pw=" + quote(password, safe=""),
    "form-encoded": lambda password: "pw=" + quote_plus(password, safe=""),
    "Basic token, bare": lambda password: base64.b64encode(f"{USER}:{password}".encode()).decode(),
    # How other servers write what they echo: PHP's JSON escapes "/", .NET's escapes "+" and
    # the like as \u002B, .NET's URL encoding writes lower-case hex; and the whole header.
    "JSON-escaped, PHP": lambda password: json.dumps(password).replace("/", "\\/"),
    ".NET JSON": lambda password: "".join(
        c if c.isascii() and c.isalnum() else "".join(f"\\u{u:04X}" for u in _utf16(c))
        for c in password
    ),
    "percent-encoded, lower-case": lambda password: re.sub(
        r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(password, safe="")
    ),
    "Basic header, JSON-escaped": lambda password: json.dumps(
        {"authorization": "Basic " + _token(password)}
    ).replace("/", "\\/"),
    "Basic header, in a query": lambda password: (
        "auth=Basic%20" + quote(_token(password), safe="").lower()
    ),
}


def _token(password: str) -> str:
    return base64.b64encode(f"{USER}:{password}".encode()).decode()


def _utf16(character: str) -> list[int]:
    """A character's UTF-16 code units: what a ``\\uXXXX`` escape writes."""
    data = character.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


passwords = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"], exclude_characters="."),
    min_size=4,
    max_size=20,
).map(lambda middle: f"{MARK}{middle}{MARK}")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(password=passwords, echo=st.sampled_from(sorted(ECHOES)), pad=st.integers(150, 215))
def test_an_echoed_password_never_reaches_the_error_or_the_dlq(
    password: str, echo: str, pad: int
) -> None:
    said = ECHOES[echo](password)
    body = ("." * pad + said + "." * 40).encode()

    async def handle(exchange: hostile.Exchange) -> None:
        if exchange.request.path.endswith(f"/{GOOD}"):
            project = json.dumps({"data": {"project": {"projectId": int(GOOD)}}}).encode()
            await exchange.respond(200, project, {"Content-Type": "application/json"})
        else:
            await exchange.respond(500, body, {"Content-Type": "text/plain"})

    with hostile.serving(handle) as server:
        api = api_settings_for(
            server.origin, claimx_api_username=USER, claimx_api_password=password
        )
        result = enrich(api, [task(BAD), task(GOOD)])
    routed = result.routed()
    info = FailureInfo.from_headers(routed.headers)
    assert "HTTP 500" in info.error_message
    headers = b"\n".join(value or b"" for _, value in routed.headers or []).decode()
    token = ECHOES["Basic token, bare"](password)
    for text in (info.error_message, headers):
        assert MARK not in text, text
        assert token[:8] not in text, text
    assert GOOD in result.project_rows()
