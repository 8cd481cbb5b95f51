"""Commits behind the worker: in order, one at a time, and never past the epoch's snapshot."""

from __future__ import annotations

import threading
import time

import pytest

from operators.pipelined import CommitBehind


def test_commits_run_in_order_one_at_a_time_off_the_caller() -> None:
    behind = CommitBehind("t")
    done: list[int] = []
    in_flight = 0
    overlap = False
    lock = threading.Lock()

    def commit(batch: int) -> None:
        nonlocal in_flight, overlap
        with lock:
            in_flight += 1
            overlap |= in_flight > 1
        time.sleep(0.01)
        done.append(batch)
        assert threading.current_thread() is not threading.main_thread()
        with lock:
            in_flight -= 1

    for batch in range(5):
        behind.submit(commit, batch)
    behind.close()

    assert done == [0, 1, 2, 3, 4]
    assert not overlap


def test_wait_returns_only_once_the_commit_is_done() -> None:
    behind = CommitBehind("t")
    release = threading.Event()
    committed = threading.Event()

    def commit(batch: str) -> None:
        release.wait(5)
        committed.set()

    behind.submit(commit, "rows")
    assert not committed.is_set()  # the caller went on while it commits
    threading.Timer(0.2, release.set).start()
    behind.wait()  # what the partition's snapshot does at the epoch's end
    assert committed.is_set()
    behind.close()


def test_a_failed_commit_fails_the_snapshot_and_stops_later_commits() -> None:
    behind = CommitBehind("t")
    done: list[str] = []

    def commit(batch: str) -> None:
        if batch == "bad":
            raise OSError("broker gone")
        done.append(batch)

    behind.submit(commit, "bad")
    with pytest.raises(OSError, match="broker gone"):
        behind.submit(commit, "next")  # the next write waits for, and fails on, the one before
    assert done == []
    behind.close()
