"""The command that sends a replay's parked records anyway, once: what the summary prints.

Raising ``--max-replays`` on the same command sends nothing: the session has read past the
parked records. A new session with an ids filter would send every older copy of those events
still in the DLQ too (each earlier replay that failed again left one). So the command selects
exactly what was parked: the same filters and ``--to``, the offsets where the parked records lie
(``--positions``), and only records already replayed as often as the limit that parked them
(``--min-replays``); ``--max-replays`` is raised past the most any of them had. Those filters
name a session of their own, so running the command twice sends each record once.
"""

from __future__ import annotations

import shlex

from claimx_flow.dlq.filters import ReplayFilter
from claimx_flow.dlq.left import LeftRecords
from claimx_flow.dlq.queues import DlqName


def force_command(
    dlq: DlqName,
    selection: ReplayFilter,
    to_topic: str | None,
    max_replays: int,
    parked: LeftRecords,
    *,
    transactional: bool = True,
) -> str | None:
    """``claimx dlq replay …`` that sends the ``parked`` records; ``None`` when none were."""
    if not parked.total:
        return None
    spans = ",".join(str(span) for _, span in sorted(parked.spans.items()))
    args = ["claimx", "dlq", "replay", dlq.value]
    if to_topic:
        args += ["--to", to_topic]
    args += _filter_args(selection)
    args += [
        "--positions",
        spans,
        "--min-replays",
        str(max_replays),
        "--max-replays",
        str(parked.most_replays + 1),
    ]
    if not transactional:
        args.append("--no-transactions")
    return shlex.join(args)


def _filter_args(selection: ReplayFilter) -> list[str]:
    """The command-line options of ``selection``, but positions and replay count (replaced)."""
    lists = (
        ("--event-ids", selection.event_ids),
        ("--media-ids", selection.media_ids),
        ("--project-id", selection.project_ids),
        ("--category", {c.value for c in selection.categories}),
        ("--event-type", selection.event_types),
    )
    args = [
        part for option, values in lists if values for part in (option, ",".join(sorted(values)))
    ]
    if selection.error_contains is not None:
        args += ["--error-contains", selection.error_contains]
    for option, at in (("--since", selection.since), ("--until", selection.until)):
        if at is not None:
            args += [option, at.isoformat()]
    return args
