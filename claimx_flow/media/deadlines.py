"""How long a batch of media transfers may take, from the bound on each transfer.

Each download and each upload has its own deadline, counted from when it holds a concurrency
slot; one that runs out is that item's transient failure, and its batch-mates keep their
results. The async step's batch deadline is only the backstop for an event loop that stopped
answering: it fails the whole step, and recovery replays the batch, so it must never fire while
the peers are slow but alive. It sits far above what a live batch can take: every item using
its whole bound, in rounds of ``concurrency``, twice over (another worker thread of the process
may hold slots of the same stage), plus a margin for the thread hand-offs and the batch's flush.

A step that keeps transfers in flight across batches (the download stage) has no batch to
bound; its backstop is on progress instead: transfers in flight and none finished for twice an
item's bound (while any is in flight, the oldest holding a slot finishes within one bound).
"""

from __future__ import annotations

import math

BACKSTOP_MARGIN_S = 60.0


def batch_backstop_s(items: int, concurrency: int, item_bound_s: float) -> float:
    """The batch deadline for ``items`` transfers, each done within ``item_bound_s``."""
    rounds = math.ceil(max(items, 1) / max(concurrency, 1))
    return 2 * rounds * item_bound_s + BACKSTOP_MARGIN_S


def stall_backstop_s(item_bound_s: float) -> float:
    """How long transfers may be in flight with none finishing, each done within
    ``item_bound_s`` of getting its slot."""
    return 2 * item_bound_s + BACKSTOP_MARGIN_S
