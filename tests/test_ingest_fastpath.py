"""The ingest stage's fast paths give exactly the answers of the slow, obvious code they skip."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from claimx_flow.models.types import MAX_ID_CHARS, normalise_id


def reference_id(value: str) -> str:
    """The id rule written plainly: strip, non-empty, no Cc/Cs character, at most 256 chars."""
    stripped = value.strip()
    if not stripped:
        raise PydanticCustomError("id_value", "must not be empty")
    if any(unicodedata.category(char) in {"Cc", "Cs"} for char in stripped):
        raise PydanticCustomError("id_value", "contains control or unencodable characters")
    if len(stripped) > MAX_ID_CHARS:
        raise PydanticCustomError("id_value", "longer than 256 characters")
    return stripped


def outcome(rule: Callable[[str], str], value: str) -> tuple[str, str]:
    try:
        return "ok", rule(value)
    except PydanticCustomError as exc:
        return "refused", str(exc)


@given(st.text(alphabet=st.characters(codec=None), max_size=300))
@example("\ud800")
@example("a\u0000b")
@example("\u200bx\u00a0y")  # format and space characters: not printable, still ids
@example("\u2028")
@example(" " + "9" * MAX_ID_CHARS + " ")
@example("9" * (MAX_ID_CHARS + 1))
@example("\x00" * (MAX_ID_CHARS + 1))  # both faults: the character one is named, as before
def test_string_ids_are_judged_as_by_the_plain_rule(text: str) -> None:
    assert outcome(normalise_id, text) == outcome(reference_id, text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(97138881, "97138881"), (97138881.0, "97138881"), (" 97138881 ", "97138881")],
)
def test_numbers_and_padded_strings_are_one_id(value: object, expected: str) -> None:
    assert normalise_id(value) == expected


@pytest.mark.parametrize("value", [True, 1.5, None, [], 10**300])
def test_non_ids_are_still_refused(value: object) -> None:
    with pytest.raises(PydanticCustomError):
        normalise_id(value)
