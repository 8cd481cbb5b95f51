"""The simulator's generated data: cheap draws that stay deterministic and in range."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.lab.simulator import data as simdata
from claimx_flow.lab.simulator.draws import Draws

seeds = st.text(max_size=40)


@given(seeds, st.integers(min_value=1, max_value=30))
def test_the_same_seed_draws_the_same_values_and_another_seed_others(seed: str, count: int) -> None:
    """Past one digest's eight words too: the draws go on from the next block."""

    def draws(text: str) -> list[int]:
        source = Draws(text)
        return [source.randrange(2**62) for _ in range(count)]

    assert draws(seed) == draws(seed)
    if count >= 2:
        assert draws(seed) != draws(seed + "x")


@given(
    seeds,
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=0, max_value=10**6),
)
def test_every_draw_stays_in_its_range(seed: str, low: int, width: int) -> None:
    source = Draws(seed)
    for _ in range(12):
        assert low <= source.randint(low, low + width) <= low + width
        assert 0 <= source.randrange(width + 1) <= width
        assert 0.0 <= source.random() < 1.0
        assert -1.5 <= source.uniform(-1.5, 2.5) <= 2.5
        assert source.choice("abc") in "abc"


def test_draws_are_spread_evenly() -> None:
    """A choice among seven, over 7,000 entities: each option about a thousand times, as the
    generated data's mix of media types, statuses and names relies on."""
    counts = Counter(Draws(f"8:media:{entity}").choice(range(7)) for entity in range(7_000))
    assert set(counts) == set(range(7))
    assert all(850 <= count <= 1_150 for count in counts.values()), counts
    mean = sum(Draws(f"8:x:{entity}").random() for entity in range(7_000)) / 7_000
    assert 0.48 <= mean <= 0.52


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    )
)
def test_generated_times_are_written_as_strftime_wrote_them(moment: datetime) -> None:
    assert simdata._iso(moment) == moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_range_is_drawn_to_both_its_ends() -> None:
    """``randint`` reaches its top as well as its bottom: the largest media lists and the
    most tasks a project has depend on it."""
    assert {Draws(f"8:x:{entity}").randint(1, 3) for entity in range(200)} == {1, 2, 3}
    assert {Draws(f"8:y:{entity}").randrange(3) for entity in range(200)} == {0, 1, 2}


def test_an_empty_range_is_refused() -> None:
    source = Draws("8:x:1")
    with pytest.raises(ValueError):
        source.randrange(0)
    with pytest.raises(ValueError):
        source.randint(5, 2)
    with pytest.raises(IndexError):
        source.choice([])
