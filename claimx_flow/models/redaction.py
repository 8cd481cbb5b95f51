"""Keeping secrets and unbounded text out of failure metadata.

Error messages travel into Kafka headers, DLQ views and logs. Anything that looks like a
credential is masked before it leaves the process, and the text is bounded so one verbose
exception cannot bloat every retry record.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MAX_ERROR_CHARS = 1000
_ELLIPSIS = "…"

_KEY = (
    r"password|passwd|pwd|secret|client[_-]?secret|token|access[_-]?token|api[_-]?key"
    r"|access[_-]?key|account[_-]?key|sasl\.password|sharedaccesskey|sharedaccesssignature"
)
_VALUE = r"""["']?(?P<secret>[^\s&,;'"}]+)"""
# https://user:pass@host
_USERINFO = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://(?P<secret>[^/\s:@]+:[^/\s@]+)@")
# presigned URLs: S3 SigV4 / SigV2 and Azure SAS signatures and credentials
# The ``&`` before a name and the ``=`` after it also as a JSON escape, an HTML entity or
# percent-encoded: a URL quoted inside an error body, or itself a query parameter.
_SIGNATURE = re.compile(
    r"(?i)(?:[?&]|\\u0026|&amp;|%26)(?:x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|signature|awsaccesskeyid|sig)(?:=|%3d)(?P<secret>[^&\s#'\"]+)"
)
# (pattern, group holding the secret): the text around the group is kept, the group masked.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization: Basic dXNlcjpwYXNz / Bearer eyJ…, also as a server echoes it escaped:
    # ``\/`` (PHP's JSON), ``\u002B`` (.NET's), ``%2f`` or ``%20`` (a query), ``+`` (a form).
    re.compile(
        r"(?i)\b(?:basic|bearer)(?:\s|%20|\+|\\u0020)+(?P<secret>(?:[A-Za-z0-9._~+/=-]"
        r"|\\/|\\u00(?:2b|2f|3d)|%(?:2b|2f|3d))+)"
    ),
    # password=…, "token": "…", AccountKey=…;
    re.compile(rf"""(?i)\b(?:{_KEY})["']?\s*[=:]\s*{_VALUE}"""),
    # A setting's name puts its keyword after ``_``, a word character, so ``\b`` misses it:
    # an assignment (``AZURE_CLIENT_SECRET=…``) in any case, and a YAML key (``api_password:
    # …``) in lower case. Not ``CLAIMX_API_PASSWORD: should be …``: our own errors name the
    # variable that way, and its next word is not a secret.
    re.compile(rf"""(?i)(?<=_)(?:{_KEY})\s*=\s*{_VALUE}"""),
    re.compile(rf"""(?<=_)(?:{_KEY})["']?\s*:\s*{_VALUE}"""),
    _USERINFO,
    _SIGNATURE,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask each of ``secrets`` wherever it appears, in any of the forms another program may
    have written it (see ``secret_forms``), then anything shaped like a credential."""
    return redact_credentials(mask_forms(text, all_forms(tuple(secrets))))


@functools.lru_cache(maxsize=16)
def all_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every form of every secret, longest first (a token may hold a password): worked out once
    per set of secrets, not per line a log formatter masks."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    return tuple(sorted(forms, key=len, reverse=True))


def mask_forms(text: str, forms: Iterable[str]) -> str:
    """``text`` with each of ``forms`` (``all_forms``) masked."""
    for form in forms:
        text = text.replace(form, MASK)
    return text


@functools.lru_cache(maxsize=64)
def secret_forms(secret: str) -> frozenset[str]:
    """``secret`` as written, JSON-escaped (a server that echoes a request in its error body)
    and percent-encoded (one that echoes a form or query): a password with a ``"``, ``\\`` or
    ``%`` is otherwise printed in clear by the masking that was meant to catch it."""
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        escaped,
        escaped.replace("/", "\\/"),  # PHP's JSON escapes "/" too
        json.dumps(secret, ensure_ascii=False)[1:-1],
        _unicode_escaped(secret, "\\u{:04X}"),  # .NET's JSON: "+" as \u002B, and the like
        _unicode_escaped(secret, "\\u{:04x}"),
    }
    every = "".join(  # every character but a letter or digit encoded, "~" too (.NET's)
        c if c.isascii() and c.isalnum() else "".join(f"%{b:02X}" for b in c.encode())
        for c in secret
    )
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe=""), every):
        forms |= {encoded, _PERCENT.sub(lambda m: m.group().lower(), encoded)}
    return frozenset(form for form in forms if form)


_PERCENT = re.compile(r"%[0-9A-F]{2}")


def _unicode_escaped(secret: str, form: str) -> str:
    """Every character but a letter or a digit written as JSON ``\\uXXXX`` escapes, one per
    UTF-16 code unit (a surrogate pair beyond the Basic Multilingual Plane)."""

    def escaped(character: str) -> str:
        units = character.encode("utf-16-be")
        return "".join(
            form.format(int.from_bytes(units[i : i + 2], "big")) for i in range(0, len(units), 2)
        )

    return "".join(c if c.isascii() and c.isalnum() else escaped(c) for c in secret)


def redact_credentials(text: str) -> str:
    """Mask credential-shaped text: auth headers, ``password=``, URL userinfo, URL signatures.

    Already-masked values are left alone, so redacting twice changes nothing.
    """
    for pattern in _PATTERNS:
        text = pattern.sub(_mask_secret_group, text)
    return text


# A URL's query string: http(s) and ws(s), also JSON-escaped (``https:\/\/``) or percent-encoded
# (``https%3A%2F%2F…%3F``). Its base ends at the first ``?`` (or ``%3F``); the query runs to
# whitespace, a quote or an angle bracket.
_URL_QUERY = re.compile(
    r"(?i)(?P<base>\b(?:https?|wss?)(?::|%3a)(?:\\?/|%2f){2}[^\s\"'<>?]*?)"
    r"(?P<sep>\?|%3f)(?P<query>[^\s\"'<>]+)"
)


def mask_url_queries(text: str) -> str:
    """Every URL's query string masked: ``https://host/path?***``.

    Presigned URLs carry their authority in the query (``X-Amz-Signature``,
    ``X-Amz-Credential``, the ClaimX ``systemDate``/``expires`` signatures, SAS tokens), so
    text shown to people or exported keeps where a URL points and loses what it grants. A URL
    this cannot see whole (a space in its path, no scheme) still loses its signature and
    credential parameters, and a URL's user and password go too. Nothing else: this runs over
    message bodies shown to people, where "Basic Claim Form.pdf" is a file name. Masking twice
    changes nothing.
    """
    masked = _URL_QUERY.sub(lambda m: f"{m.group('base')}{m.group('sep')}{MASK}", text)
    for pattern in (_USERINFO, _SIGNATURE):
        masked = pattern.sub(_mask_secret_group, masked)
    return masked


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """At most ``limit`` characters, ending in ``…`` when something was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + _ELLIPSIS


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BACKTRACE = re.compile(r"(?im)\bstack backtrace:|^ +0: ")
"""Where a Rust backtrace starts: its header, or (delta-rs's kernel errors) its first frame."""
MAX_LINE_CHARS = 500


def one_line(text: str) -> str:
    """A peer's error as one line: its terminal colours stripped (delta-rs writes them whatever
    the output is), its lines joined, a Rust backtrace (``RUST_BACKTRACE``) left off, and at
    most ``MAX_LINE_CHARS`` kept."""
    text = _BACKTRACE.split(_ESCAPES.sub("", text), maxsplit=1)[0]
    return truncate(" ".join(text.split()), MAX_LINE_CHARS)


def encodable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates: how aiohttp and the os module
    decode a peer's bytes that are not UTF-8) written as a ``\\udcff`` escape, so JSON and
    Kafka headers take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def describe_error(
    error: BaseException | str, secrets: Iterable[str] = (), limit: int = MAX_ERROR_CHARS
) -> str:
    """An error's message, safe to store: encodable, secrets masked, then bounded."""
    text = error if isinstance(error, str) else str(error)
    return truncate(redact(encodable(text), secrets), limit)


def _mask_secret_group(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if not secret.strip("*" + _ELLIPSIS):
        return match.group(0)  # already masked (or masked and then cut)
    start, end = match.span("secret")
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + MASK + text[end - whole_start :]
