"""The loop guard's way out: the command a replay's summary prints sends exactly the records it
parked, once, however many there were, and the summary lists only the first of them."""

from __future__ import annotations

import json
import shlex
from collections import Counter

from claimx_flow.dlq.left import LEFT_SHOWN
from tests.dlq.helpers import Pipeline, claimx, failure, put_letters, read_all

PARKED = LEFT_SHOWN + 10


def test_the_printed_command_forces_the_parked_records_once_and_no_older_copy(
    pipeline: Pipeline,
) -> None:
    origin = pipeline["enrichment.pending"]
    older = failure("evt_0", origin_topic=origin, replay_count=2)  # a copy replayed twice before
    parked = [
        failure(f"evt_{i}", origin_topic=origin, replay_count=3 + i % 2) for i in range(PARKED)
    ]
    among = failure("evt_among", origin_topic=origin)  # replayed by the first run, not parked
    infos = [older, *parked[:30], among, *parked[30:], failure("evt_new", origin_topic=origin)]
    put_letters(pipeline, "enrichment.dlq", infos)

    first = claimx(pipeline, "replay", "enrichment", "--project-id", "p1", "--json")

    assert first.exit_code == 1, first.output  # partial: records parked
    summary = json.loads(first.stdout)
    assert (summary["replayed"], summary["parked"]) == (3, PARKED)
    assert len(summary["parked_records"]) == LEFT_SHOWN  # listed up to a cap, counted in full
    command = summary["force_parked"]
    assert command.startswith("claimx dlq replay enrichment --project-id p1 --positions ")
    assert "--min-replays 3 --max-replays 5" in command

    forced = claimx(pipeline, *shlex.split(command)[2:], "--json")

    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["replayed"] == PARKED
    sent = Counter(
        (json.loads(r.value or b"")["event_id"], r.header("claimx.replay_count"))
        for r in read_all(pipeline.bootstrap, origin)
    )
    # The older copy of evt_0 and evt_among went once, with the first run (the command's
    # offsets span evt_among, its replay count leaves it out); every parked copy once, now.
    assert sent == Counter(
        {("evt_0", "3"): 1, ("evt_among", "1"): 1, ("evt_new", "1"): 1}
        | {(f"evt_{i}", str(4 + i % 2)): 1 for i in range(PARKED)}
    )
    again = claimx(pipeline, *shlex.split(command)[2:], "--json")
    assert (again.exit_code, json.loads(again.stdout)["replayed"]) == (1, 0)

    table = claimx(
        pipeline, "replay", "enrichment", "--project-id", "p1", "--dry-run", "--session", "look"
    )
    flat = " ".join(table.output.split())
    assert f"parked: left in the DLQ (the first {LEFT_SHOWN} of {PARKED})" in flat
    assert f"to send the parked records anyway, once: {command}\n" in table.output
