"""The results topic's boundary: generated records through a real results process.

The results stage reads ``claimx.downloads.results``, written by the download and upload stages
and by a start that sends a lost failed result again; anything else a producer puts there must
not stop it or skew its count. Hypothesis writes a batch of results at their edges (ids in any
script, sizes up to a ``long`` and past it, the whole calendar in ``finished_at``, a file
repeated, failed then completed, completed then failed) among records that are no result at all,
each with any key and headers. ``python -m bytewax.run dataflows.results`` drains the topic; it
must end by itself with 0, and its last summary line must count what the parser accepts the way
the runbook counts files: each file once per project, completed if it ever completed (with the
bytes of its first completed result), else failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimx_flow.models import MalformedMessageError, UploadResult
from tests.isolation import isolated_settings
from tests.poison.checks import Findings
from tests.poison.harness import (
    BATCH,
    RawRecord,
    poison_settings,
    produce_exact,
    run_stage_process,
    runs_within,
)
from tests.poison.strategies import headers, instants, json_values, keys

SUMMARY = re.compile(
    r"results: (\d+) completed, (\d+) failed \([^)]*\), (\d+) bytes, (\d+) projects"
)
ids = st.one_of(
    st.integers(1, 10**15).map(str),
    st.text(min_size=1, max_size=20),
    st.sampled_from(["m1", "m2", "ﾒﾃﾞｨｱ", "x" * 300, "a\x00b", " "]),
)


@st.composite
def result_documents(draw: st.DrawFn) -> dict[str, object]:
    """A result as a stage writes it, its fields at their edges (some past them)."""
    status = draw(st.sampled_from(["completed", "failed"]))
    document: dict[str, object] = {
        "media_id": draw(st.sampled_from(["m1", "m2", "m3"]) | ids),
        "project_id": draw(st.sampled_from(["p1", "p2"]) | ids),
        "status": status,
        "bytes": draw(st.integers(0, 2**64) | st.sampled_from([0, 2**63 - 1, 2**63, -1])),
        "source_event_id": draw(ids),
        "finished_at": draw(instants()),
    }
    if status == "completed":
        document |= {"onelake_path": "abfss://x/y", "sha256": "ab" * 32}
    else:
        document["error"] = draw(st.text(max_size=40))
    if draw(st.integers(0, 9)) == 0:  # one field wrong, or one unknown field
        name = draw(st.sampled_from([*document, "unknown"]))
        document[name] = draw(json_values)
    return document


values = st.one_of(
    result_documents().map(lambda d: json.dumps(d).encode()),
    result_documents().map(lambda d: json.dumps(d).encode()),
    st.none(),
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@dataclass(frozen=True)
class Counted:
    completed: int
    failed: int
    bytes: int
    projects: int


def expected(records: list[RawRecord]) -> Counted:
    """The runbook's count of what the parser accepts, in the order the stage reads it."""
    completed: dict[tuple[str, str], int] = {}
    failed: set[tuple[str, str]] = set()
    projects: set[str] = set()
    for record in records:
        try:
            result = UploadResult.from_json(record.value)
        except MalformedMessageError:
            continue
        media = (result.project_id, result.media_id)
        projects.add(result.project_id)
        if result.status == "completed":
            completed.setdefault(media, result.bytes)
        else:
            failed.add(media)
    failed -= set(completed)
    return Counted(len(completed), len(failed), sum(completed.values()), len(projects))


@runs_within(120)
@poison_settings
@given(data=st.data())
def test_the_results_stage_counts_what_the_parser_accepts_once_and_skips_the_rest(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    tmp = tmp_path_factory.mktemp("results-poison")
    settings = isolated_settings(kafka_bootstrap, tmp / "data")
    records = data.draw(
        st.lists(
            st.builds(RawRecord, value=values, key=keys, headers=headers),
            min_size=1,
            max_size=BATCH,
        ).flatmap(lambda batch: st.permutations(batch + batch[: len(batch) // 3])),
        label="records",
    )
    produce_exact(settings, settings.claimx_downloads_results_topic, records)

    findings = Findings("results boundary")
    run = run_stage_process(settings, "results", tmp / "logs", timeout_s=90)
    findings.stage_ran(run)
    lines = SUMMARY.findall(run.log)
    want = expected(records)
    if not lines and want.projects:
        findings.add(f"no summary line counts anything; expected {want}")
    elif lines:
        got = Counted(*map(int, lines[-1]))
        if got != want:
            findings.add(f"the last summary counts {got}, not {want}")
    findings.check()
