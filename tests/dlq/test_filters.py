"""Which records each replay filter takes, on records built in memory (no Kafka needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from claimx_flow.dlq.filters import (
    ReplayFilter,
    parse_categories,
    parse_instant,
    parse_positions,
    split_list,
)
from claimx_flow.dlq.reader import DeadLetter
from claimx_flow.errors import ErrorCategory
from tests.dlq.helpers import failure, hour, task_value


def _letter(n: int, **kwargs: object) -> DeadLetter:
    info = failure(f"evt_{n}", origin_topic="claimx.enrichment.pending", **kwargs)  # type: ignore[arg-type]
    return DeadLetter(
        topic="claimx.enrichment.dlq",
        partition=0,
        offset=n,
        timestamp=hour(n + 1),
        key=b"p1",
        value=task_value(f"evt_{n}", info.project_id or ""),
        headers=list(info.to_headers()),
        failure=info,
    )


LETTERS = [
    _letter(0, category=ErrorCategory.PERMANENT),
    _letter(1, message="GET /project/1: 404 Not Found"),
    _letter(2, error_class="TimeoutError", media_id="m2"),
    _letter(3, category=ErrorCategory.AUTH, media_id="m3"),
    _letter(4, project_id="p2"),
    _letter(5, project_id="p2", category=ErrorCategory.PERMANENT),
]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (ReplayFilter(), {0, 1, 2, 3, 4, 5}),
        (ReplayFilter(event_ids=frozenset({"evt_1", "evt_4"})), {1, 4}),
        (ReplayFilter(media_ids=frozenset({"m2", "m3"})), {2, 3}),
        (ReplayFilter(project_ids=frozenset({"p2"})), {4, 5}),
        (ReplayFilter(categories=frozenset({ErrorCategory.PERMANENT})), {0, 5}),
        (ReplayFilter(categories=parse_categories("auth,PERMANENT")), {0, 3, 5}),
        (ReplayFilter(error_contains="404 not FOUND"), {1}),
        (ReplayFilter(error_contains="timeouterror"), {2}),
        (ReplayFilter(since=hour(3)), {2, 3, 4, 5}),
        (ReplayFilter(until=hour(3)), {0, 1}),
        (ReplayFilter(since=hour(2), until=hour(3) + timedelta(minutes=30)), {1, 2}),
        (ReplayFilter(event_types=frozenset({"PROJECT_CREATED"})), {0, 1, 2, 3, 4, 5}),
        (ReplayFilter(event_types=frozenset({"MEDIA_ADDED"})), set()),
        (
            ReplayFilter(
                project_ids=frozenset({"p1"}), categories=frozenset({ErrorCategory.TRANSIENT})
            ),
            {1, 2},
        ),
    ],
)
def test_filter_selects(selection: ReplayFilter, expected: set[int]) -> None:
    assert {d.offset for d in LETTERS if selection.matches(d)} == expected


def test_ids_come_from_the_body_when_the_headers_lack_them() -> None:
    bare = DeadLetter("t", 0, 0, None, None, b'{"event_id": 17, "project_id": 5}', [], None)
    assert ReplayFilter(event_ids=frozenset({"17"}), project_ids=frozenset({"5"})).matches(bare)
    # Without failure headers there is no category or error to match.
    assert not ReplayFilter(categories=frozenset({ErrorCategory.TRANSIENT})).matches(bare)
    assert not ReplayFilter(error_contains="x").matches(bare)


def test_parsing_the_command_line_forms() -> None:
    assert split_list(" a, b,,c ") == {"a", "b", "c"}
    assert split_list(None) == frozenset()
    assert parse_instant("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_instant("2026-01-02T03:00:00+02:00") == datetime(2026, 1, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an ISO"):
        parse_instant("yesterday")
    with pytest.raises(ValueError, match="unknown category flaky"):
        parse_categories("transient,flaky")


def test_fingerprints_tell_filter_sets_apart() -> None:
    a = ReplayFilter(event_ids=frozenset({"a", "b"}))
    assert a.fingerprint() == ReplayFilter(event_ids=frozenset({"b", "a"})).fingerprint()
    assert a.fingerprint() != ReplayFilter(media_ids=frozenset({"a", "b"})).fingerprint()
    assert ReplayFilter().is_empty and not a.is_empty
    # Conditions added since sessions were first named leave the names of sessions without
    # them alone (a renamed session would send everything again); set, they make a new one.
    assert ReplayFilter(event_ids=frozenset({"evt_1", "evt_4"})).fingerprint() == "4db26ab977"
    forcing = ReplayFilter(positions=parse_positions("0:3-9,1:4"), min_replays=3)
    assert forcing.fingerprint() != ReplayFilter(min_replays=3).fingerprint()


def test_positions_and_replay_count_select_and_narrow_the_read() -> None:
    selection = ReplayFilter(positions=parse_positions("0:2-3,0:5"), min_replays=1)
    letters = [_letter(n, replay_count=n % 2) for n in range(6)]
    assert {d.offset for d in letters if selection.matches(d)} == {3, 5}
    assert selection.narrowed({0: 0, 1: 0}, {0: 9, 1: 9}) == ({0: 2, 1: 0}, {0: 6, 1: 0})
    for bad in ("0", "a:1", "0:5-2", "-1:3", "0:17-"):
        with pytest.raises(ValueError, match="not a position"):
            parse_positions(bad)


def test_a_body_nested_past_any_depth_has_no_fields_and_stops_no_listing() -> None:
    """A DLQ holds what could not be read: a raw event nested 50,000 deep lands there (as
    "nested too deeply"), and reading it for ids and filters must not raise."""
    for value in (b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 1200 + b"1" + b"}" * 1200):
        letter = DeadLetter("claimx.events.dlq", 0, 7, None, None, value, [], None)
        assert letter.value_fields == {}
        assert ReplayFilter().matches(letter)
        assert letter.ids.project_id is None
