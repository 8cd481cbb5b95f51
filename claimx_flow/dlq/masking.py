"""What the DLQ views mask in text they show: URL queries and credential-shaped text, not words.

The configured secrets are masked in every form, as the stages mask them. A view shows message
bodies, where "Basic Claim Form.pdf" is a file name and "pwd: reset
needed" a note, so the stages' ``redact_credentials`` (which masks the word after any
``Basic`` or ``password:``) would eat them. Here a credential is masked only in a shape that
is one: a URL's query (presigned URLs carry their signature there), user info or signature;
an assignment (``password=…``, ``AccountKey=…;``); a quoted key's quoted value (``"password":
"…"``, ``'api_key': '…'``); a scheme after ``Authorization``; a ``Basic`` token that decodes
to ``user:password``; a JWT after ``Bearer``. A header whose name says it holds a credential
(``Authorization``, ``X-Api-Key``…) is masked whole. Masking twice changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from claimx_flow.models.redaction import MASK, all_forms, mask_forms, mask_url_queries

# Words a credential's name ends in: ``password``, ``db_password``, ``clientSecret``,
# ``access_token``, ``AccountKey``, ``SharedAccessSignature``.
_NAME = (
    r"[\w.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|account[_-]?key"
    r"|shared[_-]?access[_-]?(?:key|signature)|credentials?)"
)
_QUOTE = r"""(?:\\?["'])"""  # a quote, or a JSON-escaped one inside a JSON string
# A quoted value, whole up to its closing quote (spaces, commas and escaped quotes included):
# "…", '…', or \"…\" inside a JSON string.
_QUOTED = (
    r'(?:"(?P<dq>(?:[^"\\]|\\.)*)"'
    r"|'(?P<sq>(?:[^'\\]|\\.)*)'"
    r'|\\"(?P<eq>.*?)\\")'
)
_SECRETS = ("secret", "dq", "sq", "eq")
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # password="…", sasl.jaas password="…"
    re.compile(rf"""(?i)(?<![\w.-]){_NAME}\s*=\s*{_QUOTED}"""),
    # password=…, AccountKey=…; (unquoted: up to a space or a separator)
    re.compile(rf"""(?i)(?<![\w.-]){_NAME}\s*=\s*(?P<secret>[^\s&;'"\\}}]+)"""),
    # "password": "…", 'api_key': '…' (JSON, a Python dict in an error message)
    re.compile(rf"""(?i){_QUOTE}{_NAME}{_QUOTE}\s*:\s*{_QUOTED}"""),
    # Authorization: Basic …, "authorization": "Bearer …"
    re.compile(
        rf"""(?i)\b(?:proxy-)?authorization{_QUOTE}?\s*[:=]\s*{_QUOTE}?"""
        r"(?:basic|bearer|digest|negotiate|ntlm|token|sharedkey|aws4-hmac-sha256)\s+"
        r"(?P<secret>[^\s'\"\\]+)"
    ),
    # a JWT: eyJ….….…
    re.compile(r"(?i)\bbearer\s+(?P<secret>eyJ[\w-]*\.[\w-]+\.[\w-]*)"),
)
_BASIC = re.compile(r"(?i)\bbasic\s+(?P<secret>[A-Za-z0-9+/]{4,}={0,2})(?![\w+/=])")
_CREDENTIAL_HEADER = re.compile(
    r"(?i)(?:^|[-_.])(?:authorization|cookie|password|passwd|secret|token|api[-_]?key"
    r"|credentials?|signature)$"
)


_configured: tuple[str, ...] = ()


def mask_also(secrets: Iterable[str]) -> None:
    """Mask these secrets too, in every form ``secret_forms`` knows: the configured ones, which
    a record a stage wrote before they were configured, or another producer's, may hold."""
    global _configured
    _configured = all_forms(tuple(secrets))


def masked_text(text: str) -> str:
    """``text`` fit to show: the configured secrets, URL queries and every credential-shaped
    part masked."""
    text = mask_url_queries(mask_forms(text, _configured))
    for pattern in _PATTERNS:
        text = pattern.sub(_masked_group, text)
    return _BASIC.sub(_masked_basic, text)


def masked_header(name: str, text: str) -> str:
    """A header's value fit to show: all of it when its name says it is a credential."""
    if _CREDENTIAL_HEADER.search(name) and text.strip("*"):
        return MASK
    return masked_text(text)


def _masked_group(match: re.Match[str]) -> str:
    group = next(g for g in _SECRETS if g in match.re.groupindex and match.group(g) is not None)
    secret = match.group(group)
    if not secret.strip("*…"):
        return match.group(0)  # already masked, or empty
    start, end = match.span(group)
    whole = match.group(0)
    return whole[: start - match.start()] + MASK + whole[end - match.start() :]


def _masked_basic(match: re.Match[str]) -> str:
    """``Basic <token>`` masked only when the token is one: base64 of ``user:password``."""
    try:
        decoded = base64.b64decode(match.group("secret"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return match.group(0)
    return _masked_group(match) if ":" in decoded else match.group(0)
