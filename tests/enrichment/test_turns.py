"""Turns: a bound on groups enriched at once, served in arrival order, that a stop closes.

Pure asyncio on this process's own loop: the primitive has no peer to be real against. Its use
against a slow API, and a stop through a real enrich process, are in ``test_slow_api.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from claimx_flow.enrichment import turns as turns_module
from claimx_flow.enrichment.turns import Turns


def test_turns_are_given_in_the_order_they_were_asked() -> None:
    async def run() -> list[int]:
        turns = Turns(2)
        order: list[int] = []

        async def holder(n: int) -> None:
            assert await turns.take()
            order.append(n)
            await asyncio.sleep(0.01)
            assert turns.held <= 2
            turns.give()

        await asyncio.gather(*(holder(n) for n in range(10)))
        assert turns.held == 0 and turns.waiting == 0
        return order

    assert asyncio.run(run()) == list(range(10))


def test_a_waiter_cancelled_keeps_no_turn() -> None:
    """Cancelled while waiting, or just after its turn was given: either way the turn goes on
    to the next group, and none is lost."""

    async def run() -> None:
        turns = Turns(1)
        assert await turns.take()
        waiting = asyncio.ensure_future(turns.take())
        given_then_cancelled = asyncio.ensure_future(turns.take())
        last = asyncio.ensure_future(turns.take())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.sleep(0)
        turns.give()  # to given_then_cancelled, which is cancelled before it resumes
        given_then_cancelled.cancel()
        assert await last is True
        assert waiting.cancelled() and given_then_cancelled.cancelled()
        turns.give()
        assert turns.held == 0 and turns.waiting == 0

    asyncio.run(run())


def test_a_stop_closes_after_one_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once stopping, turns are still given until the closing time (the stop plus one
    deadline); then the groups still waiting are turned away at once, and later ones too."""
    monkeypatch.setattr(turns_module, "STOP_POLL_S", 0.01)

    async def run() -> None:
        stopped_at: float | None = None
        turns = Turns(1, stopped_at=lambda: stopped_at, closing_after_s=0.3)
        assert await turns.take()
        assert turns.closing_in() is None
        first = asyncio.ensure_future(turns.take())
        second = asyncio.ensure_future(turns.take())
        await asyncio.sleep(0.05)
        stopped_at = time.monotonic()
        await asyncio.sleep(0.05)
        closing = turns.closing_in()
        assert closing is not None and 0.1 < closing <= 0.3
        turns.give()  # before the closing time: the first waiter has its turn
        assert await first is True
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await second is False  # turned away at the closing time, not before
        assert loop.time() - started >= closing - 0.1
        assert await turns.take() is False
        turns.give()
        assert turns.held == 0 and turns.waiting == 0

    asyncio.run(run())
