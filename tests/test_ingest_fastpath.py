"""The ingest stage's fast paths give exactly the answers of the slow, obvious code they skip."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from claimx_flow.delta.tables import EVENTS, PROJECTS, RowSchemaError
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


# Table conversion: the per-column type check and the key check answer as the per-value ones --

ROW: dict[str, Any] = {
    "event_id": "e1",
    "event_type": "PROJECT_CREATED",
    "project_id": "1",
    "ingested_at": datetime(2024, 1, 4, 12, 0, tzinfo=UTC),
    "created_at": datetime(2024, 1, 4, 12, 1, tzinfo=UTC),
    "event_date": date(2024, 1, 4),
}


class Name(str):
    """A str subclass: accepted before, by isinstance, so accepted still."""


def test_the_first_bad_value_of_a_column_is_the_one_named() -> None:
    rows = [ROW, {**ROW, "media_id": 5}, {**ROW, "media_id": b"5"}, {**ROW, "media_id": 6.0}]
    with pytest.raises(RowSchemaError, match=r"media_id: expected string, got int$"):
        EVENTS.to_arrow(rows)


def test_subclasses_take_the_per_value_check() -> None:
    table = EVENTS.to_arrow([ROW, {**ROW, "event_id": "e2", "media_id": Name("m")}])
    assert table.column("media_id").to_pylist() == [None, "m"]
    with pytest.raises(RowSchemaError, match=r"event_date: expected date32\[day\], got datetime"):
        EVENTS.to_arrow([ROW, {**ROW, "event_date": datetime(2024, 1, 4, tzinfo=UTC)}])
    with pytest.raises(RowSchemaError, match="year_built: expected int64, got bool"):
        PROJECTS.to_arrow(
            [{"project_id": "1", "year_built": 1}, {"project_id": "2", "year_built": True}]
        )


def test_the_first_row_with_unknown_keys_is_the_one_named() -> None:
    rows = [ROW, {**ROW, "zz": 1, "aa": 2}, {**ROW, "yy": 3}]
    with pytest.raises(
        RowSchemaError, match=r"row 1 has keys that are not columns: \['aa', 'zz'\]"
    ):
        EVENTS.to_arrow(rows)
