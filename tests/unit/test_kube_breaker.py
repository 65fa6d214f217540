"""The API-server breaker: three connection failures in a row open it; requests then fail at
once for a doubling pause, one goes through after each pause, and any answer closes it."""

from __future__ import annotations

import pytest

from vaultbridge.kube.breaker import ApiServerBackingOff, ConnectionBreaker
from vaultbridge.kube.errors import KubeUnavailable, Operation, translate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_answers_and_fewer_failures_than_the_threshold_keep_it_closed() -> None:
    breaker = ConnectionBreaker(clock=Clock())
    for _ in range(5):
        breaker.before()
        breaker.failed()
        breaker.failed()
        breaker.answered()
    breaker.before()
    assert breaker.open_until is None and breaker.refused == 0


def test_it_opens_refuses_lets_one_through_after_the_pause_and_closes_on_an_answer() -> None:
    clock = Clock()
    breaker = ConnectionBreaker(clock=clock)
    for _ in range(3):
        breaker.before()
        breaker.failed()
    with pytest.raises(ApiServerBackingOff):
        breaker.before()
    clock.now += 0.5
    breaker.before()  # the trial
    with pytest.raises(ApiServerBackingOff):
        breaker.before()  # only one at a time
    breaker.failed()
    assert breaker.open_until == pytest.approx(clock.now + 1.0)  # the pause doubled
    clock.now += 1.0
    breaker.before()
    breaker.answered()
    breaker.before()
    assert breaker.open_until is None and breaker.refused == 2


def test_the_pause_is_capped() -> None:
    clock = Clock()
    breaker = ConnectionBreaker(clock=clock)
    for _ in range(40):
        breaker.failed()
    assert breaker.open_until is not None and breaker.open_until - clock.now == 10.0


def test_a_refusal_reads_as_the_api_server_unavailable() -> None:
    error = translate(ApiServerBackingOff("backing off"), Operation("update", "secrets", "ns", "s"))
    assert isinstance(error, KubeUnavailable) and "ApiServerBackingOff" in str(error)
