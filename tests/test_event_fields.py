"""The ingest hot path (``read_event_fields``) answers exactly as ``RawEvent`` does: the same
fields for an event, the same refusal (and reason) for anything else, on generated events,
poison and odd documents (the strategies of the poison tests)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimx_flow.models import EnrichmentTask, MalformedMessageError, RawEvent
from claimx_flow.models.event_fields import fields_of, read_event_fields
from tests.poison.strategies import either_values, good_event, poison_values

values = st.one_of(
    good_event().map(lambda event: event[0]),
    poison_values.map(lambda poison: poison[0]),
    either_values,
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_the_hot_path_reads_every_value_as_raw_event_does(value: bytes | None) -> None:
    _reads_as_raw_event_does(value)


def _reads_as_raw_event_does(value: bytes | None) -> None:
    """The same fields (the instant's zone the very object), task and refusal reason."""
    try:
        expected = fields_of(RawEvent.from_kafka(value))
    except MalformedMessageError as refused:
        with pytest.raises(MalformedMessageError) as also:
            read_event_fields(value)
        assert also.value.reason == refused.reason
        return
    fields = read_event_fields(value)
    assert fields == expected
    assert fields["ingested_at"].tzinfo is expected["ingested_at"].tzinfo
    assert EnrichmentTask.message_from_fields(fields) == EnrichmentTask.message_from_fields(
        expected
    )


@pytest.mark.parametrize(
    "value",
    [
        b'{"eventType": "PROJECT_CREATED", "projectId": 5000001, '
        b'"ingestedAt": "2024-01-01T00:00:00Z"}',
        b'{"event_type": " PROJECT_CREATED ", "project_id": "5000001", '
        b'"ingested_at": "2024-01-01T05:00:00+05:00", "media_id": 7}',
        b'{"event_id": "e1", "event_type": "X", "project_id": " 5 ", '  # an id to strip
        b'"ingested_at": "2024-01-01T00:00:00"}',
        b'{"event_id": 1.0, "event_type": "X", "project_id": "5", "ingested_at": 0}',
    ],
)
def test_known_spellings(value: bytes) -> None:
    assert read_event_fields(value) == fields_of(RawEvent.from_kafka(value))


def _digits(size: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=size, max_size=size)


instant_texts = st.builds(
    lambda date, time, fraction, zone: f"{date}T{time}{fraction}{zone}",
    st.one_of(
        st.dates().map(lambda day: day.isoformat()),  # real days
        st.builds(lambda y, m, d: f"{y}-{m}-{d}", _digits(4), _digits(2), _digits(2)),
    ),
    st.one_of(
        st.times().map(lambda at: at.replace(microsecond=0).isoformat()),
        st.builds(lambda h, m, s: f"{h}:{m}:{s}", _digits(2), _digits(2), _digits(2)),
    ),
    st.one_of(st.just(""), st.integers(0, 9).flatmap(_digits).map(lambda f: f".{f}")),
    st.one_of(
        st.sampled_from(["", "Z", "z", "+00:00", "-00:00", " ", "+0000", "UTC"]),
        st.builds(
            lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _digits(2), _digits(2)
        ),
    ),
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    at=st.one_of(instant_texts, st.text(max_size=40)),
    alias=st.sampled_from(["ingested_at", "ingestedAt", "IngestionTime"]),
)
def test_an_instant_reads_as_raw_event_reads_it(at: str, alias: str) -> None:
    """The hot path reads the usual spellings of an instant itself (``datetime.fromisoformat``):
    every text near them, real days or not, reads as pydantic-core reads it in ``RawEvent``."""
    _reads_as_raw_event_does(json.dumps({"event_type": "X", "project_id": "5", alias: at}).encode())
