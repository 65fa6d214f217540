"""The outage gate: after three unavailabilities in a row, work is held and one probe at a time
runs on a capped backoff; the first other result releases everything held."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultbridge.controller.outage import PROBE_CAP, OutageGate, probe_delay


class Harness:
    def __init__(self) -> None:
        self.requeued: list[str] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.changes: list[str | None] = []
        self.gate: OutageGate[str, str] = OutageGate(
            lambda item: item,
            self.requeued.extend,
            on_change=self.changes.append,
            jitter=lambda: 0.0,
            schedule=lambda delay, action: self.timers.append((delay, action)),
        )

    def fire(self) -> float:
        delay, action = self.timers.pop(0)
        action()
        return delay


def down(h: Harness, backend_reason: str = "VaultUnavailable") -> None:
    for key in ("a", "b", "c"):
        assert h.gate.admit(key)
        h.gate.result(key, backend_reason)


def test_three_unavailabilities_close_it_and_items_are_held() -> None:
    h = Harness()
    down(h)
    assert h.changes == ["vault"] and h.gate.down == "vault"
    assert not h.gate.admit("d") and not h.gate.admit("a")
    assert h.gate.holding() == 2 and h.requeued == []


def test_other_failures_or_a_success_between_do_not_close_it() -> None:
    h = Harness()
    for reason in (
        "VaultUnavailable",
        "VaultUnavailable",
        None,
        "VaultUnavailable",
        "CephRejected",
    ):
        h.gate.result("x", reason)
    assert h.gate.down is None and h.gate.admit("y")


def test_one_probe_at_a_time_on_a_capped_doubling_backoff() -> None:
    h = Harness()
    down(h)
    for key in "defg":
        h.gate.admit(key)
    delays = []
    for i in range(8):
        delays.append(h.fire())
        probe = h.requeued[-1]
        assert h.gate.admit(probe)  # the probe runs; every other item stays held
        assert not h.gate.admit(f"late-{i}")
        h.gate.result(probe, "VaultUnavailable")
        h.gate.admit(probe)  # its own retry comes back later and is held again
    assert delays == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]  # jitter 0: half the step
    assert h.gate.probes == 8 and h.gate.down == "vault"


def test_the_first_success_releases_everything_held() -> None:
    h = Harness()
    down(h)
    for key in "defg":
        h.gate.admit(key)
    h.fire()
    probe = h.requeued.pop()
    assert h.gate.admit(probe)
    h.gate.result(probe, None)
    assert sorted(h.requeued) == sorted(set("defg") - {probe})
    assert h.gate.down is None and h.changes == ["vault", None] and h.gate.holding() == 0
    assert h.gate.admit("next")


def test_a_probe_with_nothing_held_opens_the_gate() -> None:
    h = Harness()
    down(h)
    h.fire()
    assert h.gate.down is None and h.changes == ["vault", None]


@pytest.mark.parametrize("attempt", range(30))
def test_probe_delay_stays_within_the_cap(attempt: int) -> None:
    assert 0 < probe_delay(attempt, 0.999) <= PROBE_CAP
    assert probe_delay(attempt, 0.0) >= min(PROBE_CAP, 2.0**attempt) / 2
