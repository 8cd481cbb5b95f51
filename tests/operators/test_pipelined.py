"""Commits behind the worker: in order, one at a time, gathered while one runs, and never past
the epoch's snapshot."""

from __future__ import annotations

import threading
import time

import pytest

from operators.pipelined import CommitBehind


def test_items_are_committed_in_order_one_commit_at_a_time_off_the_caller() -> None:
    done: list[int] = []
    in_flight = 0
    overlap = False
    lock = threading.Lock()

    def commit(items: list[int]) -> None:
        nonlocal in_flight, overlap
        with lock:
            in_flight += 1
            overlap |= in_flight > 1
        assert threading.current_thread() is not threading.main_thread()
        time.sleep(0.01)
        done.extend(items)
        with lock:
            in_flight -= 1

    behind: CommitBehind[int] = CommitBehind("t", commit)
    for batch in range(20):
        behind.add([batch * 10 + i for i in range(10)])
    behind.close()

    assert done == list(range(200))
    assert not overlap


def test_what_arrives_during_a_commit_is_committed_together() -> None:
    release = threading.Event()
    commits: list[list[str]] = []

    def commit(items: list[str]) -> None:
        commits.append(items)
        release.wait(5)

    behind: CommitBehind[str] = CommitBehind("t", commit)
    behind.add(["a"])
    while not commits:  # the first commit has started and is held
        time.sleep(0.001)
    for item in ("b", "c", "d"):
        behind.add([item])  # returns at once: gathered behind the running commit
    release.set()
    behind.close()

    assert commits == [["a"], ["b", "c", "d"]]


def test_a_lingering_commit_gathers_until_enough_or_its_time_is_up() -> None:
    commits: list[list[int]] = []
    behind: CommitBehind[int] = CommitBehind("t", commits.append, linger_s=30.0, enough=5)
    for item in range(4):
        behind.add([item])  # too few: the commit waits for more
    time.sleep(0.05)
    assert commits == []
    behind.add([4])  # enough: committed at once, long before the linger is up
    deadline = time.monotonic() + 5
    while not commits and time.monotonic() < deadline:
        time.sleep(0.001)
    assert commits == [[0, 1, 2, 3, 4]]

    quick: CommitBehind[int] = CommitBehind("q", commits.append, linger_s=0.05, enough=100)
    started = time.monotonic()
    quick.add([7])
    while len(commits) < 2:
        time.sleep(0.001)
    assert commits[1] == [7] and time.monotonic() - started < 5  # the time was up
    behind.close()
    quick.close()


def test_the_epochs_end_cuts_a_linger_short() -> None:
    commits: list[list[int]] = []
    behind: CommitBehind[int] = CommitBehind("t", commits.append, linger_s=60.0, enough=1000)
    behind.add([1, 2])
    started = time.monotonic()
    behind.wait()  # the snapshot: everything handed over, committed now
    assert commits == [[1, 2]] and time.monotonic() - started < 5
    behind.close()


def test_wait_returns_only_once_everything_is_committed() -> None:
    release = threading.Event()
    committed: list[str] = []

    def commit(items: list[str]) -> None:
        release.wait(5)
        committed.extend(items)

    behind: CommitBehind[str] = CommitBehind("t", commit)
    behind.add(["rows"])
    behind.add(["more rows"])
    assert committed == []  # the caller went on while it commits
    threading.Timer(0.2, release.set).start()
    behind.wait()  # what the partition's snapshot does at the epoch's end
    assert committed == ["rows", "more rows"]
    behind.close()


def test_the_worker_waits_once_max_pending_items_are_waiting() -> None:
    release, entered = threading.Event(), threading.Event()

    def commit(items: list[int]) -> None:
        entered.set()
        release.wait(5)

    behind: CommitBehind[int] = CommitBehind("t", commit, max_pending=2)
    behind.add([1])
    assert entered.wait(5)  # the commit of [1] is running and held
    behind.add([2, 3])  # pending is now full
    blocked = threading.Event()

    def third() -> None:
        behind.add([4])
        blocked.set()

    threading.Thread(target=third).start()
    assert not blocked.wait(0.2)  # held back: memory stays bounded
    release.set()
    assert blocked.wait(5)
    behind.close()


def test_a_failed_commit_fails_the_snapshot_and_every_later_hand_over() -> None:
    committed: list[str] = []

    def commit(items: list[str]) -> None:
        if "bad" in items:
            raise OSError("broker gone")
        committed.extend(items)

    behind: CommitBehind[str] = CommitBehind("t", commit)
    behind.add(["bad"])
    with pytest.raises(OSError, match="broker gone"):
        behind.wait()
    with pytest.raises(OSError, match="broker gone"):
        behind.add(["next"])
    behind.close()  # already raised: closing only logs it (a second error would abort Bytewax)
    assert committed == []
