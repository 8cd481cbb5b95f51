"""The API client reads answers with pydantic-core's parser, and must read them exactly as
``json.loads`` did: the same values, and the same refusals (a refusal decides whether a call is
retried or dead-lettered). Held to that on generated documents, their bytes and mutations.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from claimx_flow.api.client import read_json

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # lone surrogates included: valid JSON as "\\ud800" escapes
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def _outcome(read: Any, raw: bytes) -> tuple[str, str]:
    """What reading ``raw`` gives: the value's repr (NaN equals NaN, -0.0 differs from 0.0,
    key order counts), or the kind of error."""
    try:
        return "value", repr(read(raw))
    except (ValueError, RecursionError) as error:
        return "error", type(error).__name__


def _same_as_json(raw: bytes) -> None:
    assert _outcome(read_json, raw) == _outcome(json.loads, raw), raw[:200]


@settings(max_examples=400, deadline=None)
@given(_DOCUMENTS, st.booleans(), st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
def test_documents_read_as_json_reads_them(document: Any, ascii_only: bool, encoding: str) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only)
    _same_as_json(text.encode(encoding, "surrogatepass"))


@settings(max_examples=400, deadline=None)
@given(_DOCUMENTS, st.data())
def test_damaged_documents_read_or_refused_as_json_does(document: Any, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        if raw and data.draw(st.booleans()):
            del raw[min(at, len(raw) - 1)]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    _same_as_json(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_read_or_refused_as_json_does(raw: bytes) -> None:
    _same_as_json(raw)


def test_edges_json_reads_its_own_way() -> None:
    """What pydantic-core's parser refuses and ``json`` reads (or refuses with another error):
    each must come out as ``json`` has it."""
    for raw in (
        b'{"a": 1, "a": 2, "b": 3}',  # duplicate keys: the last value, at the first place
        b'["\\ud800"]',  # a lone surrogate
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark
        "[1]".encode("utf-16"),
        b"[NaN, Infinity, -Infinity]",
        b"[" + b"9" * 5000 + b"]",  # past Python's int-from-text limit
        b"[" * 3000 + b"]" * 3000,  # past any recursion limit
        b"[" * 300 + b"]" * 300,  # past pydantic-core's depth, within json's
        b'["a\x01b"]',  # a raw control character in a string
    ):
        _same_as_json(raw)
