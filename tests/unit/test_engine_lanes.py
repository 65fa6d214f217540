"""The shared-thread lanes and timers the rotation journal runs on."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from vaultbridge.engine.lanes import Lane, Timers


def test_a_lane_runs_calls_one_at_a_time_in_order() -> None:
    pool = ThreadPoolExecutor(max_workers=8)
    lane = Lane(pool)
    seen: list[int] = []
    running = threading.Semaphore(1)

    def call(n: int) -> int:
        assert running.acquire(blocking=False), "two calls of one lane overlapped"
        time.sleep(0.001)
        seen.append(n)
        running.release()
        return n * 2

    futures = [lane.submit(functools.partial(call, n)) for n in range(50)]
    assert [f.result(timeout=5) for f in futures] == [n * 2 for n in range(50)]
    assert seen == list(range(50))
    pool.shutdown()


def test_lanes_on_one_pool_do_not_wait_for_each_other() -> None:
    pool = ThreadPoolExecutor(max_workers=2)
    slow, fast = Lane(pool), Lane(pool)
    release = threading.Event()
    blocked = slow.submit(lambda: release.wait(5))
    assert fast.submit(lambda: "done").result(timeout=2) == "done"
    release.set()
    assert blocked.result(timeout=2) is True
    pool.shutdown()


def test_a_failing_call_reaches_its_future_and_the_lane_goes_on() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    lane = Lane(pool)

    def boom() -> None:
        raise RuntimeError("write failed")

    failed = lane.submit(boom)
    after = lane.submit(lambda: "next")
    with pytest.raises(RuntimeError, match="write failed"):
        failed.result(timeout=2)
    assert after.result(timeout=2) == "next"
    pool.shutdown()


def test_timers_fire_in_due_order_and_cancelled_ones_do_not() -> None:
    timers = Timers()
    fired: list[str] = []
    done = threading.Event()

    def late() -> None:
        fired.append("late")
        done.set()

    timers.call_later(0.06, late)
    cancelled = timers.call_later(0.02, lambda: fired.append("cancelled"))
    timers.call_later(0.01, lambda: fired.append("early"))
    cancelled.cancel()
    assert done.wait(2)
    assert fired == ["early", "late"]


def test_a_timer_that_raises_does_not_stop_the_others() -> None:
    timers = Timers()
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("flush failed")

    timers.call_later(0.0, boom)
    timers.call_later(0.01, done.set)
    assert done.wait(2)


def test_the_journal_keeps_a_long_rotation_alive_and_never_drops_its_final_status() -> None:
    from vaultbridge.engine.journal import Journal as _Journal
    from vaultbridge.engine.journal import StatusWrite

    pool = ThreadPoolExecutor(max_workers=4)
    writes: list[tuple[str, int]] = []

    def write(label: str, beats: int, *, claim: bool = False) -> StatusWrite:
        # a label for the credential and a count of beats for the status: the journal only
        # passes them on
        return StatusWrite(cast(Any, label), cast(Any, beats), "rv" if claim else None)

    def save(written: StatusWrite) -> None:
        writes.append((cast(str, written.credential), cast(int, written.status)))

    def refreshed(last: StatusWrite) -> StatusWrite | None:
        label, beats = cast(str, last.credential), cast(int, last.status)
        return None if label == "final" else write(label, beats + 1)  # no journal: nothing to beat

    def soon(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not check():
            assert time.monotonic() < deadline, writes
            time.sleep(0.01)

    with _Journal(pool, Timers(), save, defer=10) as journal:
        journal.keep_alive(0.05, refreshed)
        journal.submit_status(write("claim", 0, claim=True))
        soon(lambda: len(writes) >= 3)
        assert writes[:3] == [("claim", 0), ("claim", 1), ("claim", 2)]  # rewritten, fresher
        journal.submit_status(write("step", 0))  # held back: a beat sends it now
        soon(lambda: ("step", 1) in writes)
        journal.submit_status(write("final", 0))
        time.sleep(0.2)  # beats fall due meanwhile: they must leave the final status alone
        assert ("final", 0) not in writes  # still held back (defer), not dropped or beaten
    assert writes[-1] == ("final", 0)
    count = len(writes)
    time.sleep(0.15)
    assert len(writes) == count  # no heartbeat after the rotation
    pool.shutdown()
