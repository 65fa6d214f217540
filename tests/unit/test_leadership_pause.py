"""Between two election rounds: a leader sleeps its retry period, a standby waits on its watch of
the Lease, and a watch that fails at once is never a hot loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from vaultbridge.controller.leadership import Leadership
from vaultbridge.kube import LeaderElector


class Elector:
    def __init__(self, *, leader: bool, free: bool, waits: float = 0.0, failures: int = 0) -> None:
        self.is_leader, self.free, self.waits = leader, free, waits
        self.failures, self.lease_duration = failures, 1.0
        self.watched = 0

    def wait_as_standby(self, stop: threading.Event, beat: Callable[[], None]) -> bool:
        self.watched += 1
        beat()
        time.sleep(self.waits)
        return self.free


def leadership(elector: Elector, retry: float = 0.3) -> Leadership:
    return Leadership(cast(LeaderElector, cast(Any, elector)), retry)


def timed(lead: Leadership) -> float:
    began = time.monotonic()
    lead.pause()
    return time.monotonic() - began


def test_a_leader_waits_its_retry_period_and_never_watches() -> None:
    elector = Elector(leader=True, free=False)
    assert 0.28 <= timed(leadership(elector)) < 1.0
    assert elector.watched == 0


def test_a_standby_whose_lease_was_released_goes_at_once() -> None:
    elector = Elector(leader=False, free=True)
    lead = leadership(elector)
    assert timed(lead) < 0.2
    assert elector.watched == 1 and lead.alive()


def test_a_standby_whose_watch_failed_at_once_still_waits_the_retry_period() -> None:
    elector = Elector(leader=False, free=False)
    assert 0.28 <= timed(leadership(elector)) < 1.0


def test_a_standby_whose_watch_lasted_waits_no_longer() -> None:
    elector = Elector(leader=False, free=False, waits=0.5)
    assert 0.48 <= timed(leadership(elector)) < 0.75


def test_stopping_ends_the_pause() -> None:
    lead = leadership(Elector(leader=True, free=False), retry=30)
    lead.stopping.set()
    assert timed(lead) < 0.2


def test_rounds_that_failed_back_off_even_when_the_lease_looks_ours() -> None:
    # the API server unreachable: the last Lease seen names this process, which lost it
    delays = [timed(leadership(Elector(leader=False, free=True, failures=n))) for n in (1, 2, 3)]
    assert 0.14 <= delays[0] < 0.35 and 0.29 <= delays[1] < 0.65 and 0.5 <= delays[2] < 1.1
    assert max(timed(leadership(Elector(leader=False, free=True, failures=40))) for _ in "ab") < 1.1
