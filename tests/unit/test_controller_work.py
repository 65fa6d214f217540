"""The controller's workers: what they queue after each outcome of the engine."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, cast

import pytest

from vaultbridge.controller.work import Workers
from vaultbridge.engine.outcome import Outcome
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.metrics import Metrics
from vaultbridge.triggers.workqueue import Item, WorkQueue

REF = CredentialRef("apps", "app")


class FakeClock:
    def __init__(self) -> None:
        self.now = time.monotonic()  # the workers' minimum interval is on the real clock

    def __call__(self) -> float:
        return self.now


class OneOutcome:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def reconcile(self, ref: CredentialRef) -> Outcome:
        return self.outcome

    rotate = reconcile


def _run_once(outcome: Outcome) -> tuple[WorkQueue[CredentialRef], FakeClock]:
    clock = FakeClock()
    queue: WorkQueue[CredentialRef] = WorkQueue(clock=clock)
    workers = Workers(cast(Any, OneOutcome(outcome)), queue, Metrics(), cast(Any, None), 2.0)
    queue.add(REF)
    item = queue.get(timeout=0)
    assert item is not None
    queue.done(REF, workers._process(item))
    return queue, clock


@pytest.mark.parametrize("result", ["promoted", "unchanged"])
def test_a_retirement_due_later_wakes_the_credential_then(result: Any) -> None:
    """A successful outcome that says when a cephx retirement is due (or when a blocked one
    may be tried again) must bring the credential back then, not at the next resync."""
    queue, clock = _run_once(Outcome(REF, result, 2, retry_after=timedelta(seconds=30)))
    clock.now += 29
    assert queue.get(timeout=0) is None
    clock.now += 2
    item = queue.get(timeout=0)
    assert item is not None and item.key == REF and item.trigger == "retire"


def test_a_success_with_nothing_due_queues_nothing() -> None:
    queue, clock = _run_once(Outcome(REF, "promoted", 2))
    clock.now += 3600
    assert queue.get(timeout=0) is None


def test_a_failure_is_retried_after_its_backoff() -> None:
    queue, clock = _run_once(Outcome(REF, "failed", 2, retry_after=timedelta(seconds=60)))
    clock.now += 59
    assert queue.get(timeout=0) is None
    clock.now += 2
    item = queue.get(timeout=0)
    assert item is not None and item.trigger == "retry"


def test_a_cluster_at_its_cap_parks_work_until_one_of_its_reconciles_finishes() -> None:
    """With several clusters in use, one cluster never takes more than its cap of the workers;
    what waits is parked (no polling) and queued again as that cluster's reconciles finish."""
    queue: WorkQueue[CredentialRef] = WorkQueue()
    clusters = {CredentialRef("a", str(i)): "slow" for i in range(3)}
    clusters[CredentialRef("b", "0")] = "fast"
    workers = Workers(
        cast(Any, OneOutcome(Outcome(REF, "unchanged", 1))),
        queue,
        Metrics(),
        cast(Any, None),
        0.0,
        cluster_of=clusters.__getitem__,
        cluster_cap=1,
    )
    workers.clusters_in_use = 2
    first, second, third = (queue_item(ref) for ref in list(clusters)[:3])
    assert workers._enter("slow", first)
    assert not workers._enter("slow", second)  # parked, not queued
    assert not workers._enter("slow", third)
    assert queue.get(timeout=0) is None
    assert workers._enter("fast", queue_item(CredentialRef("b", "0")))  # another cluster runs
    workers._leave("slow")
    released = queue.get(timeout=0)
    assert released is not None and released.key == second.key
    assert queue.get(timeout=0) is None  # one per finished reconcile
    workers._leave("slow")
    workers.clusters_in_use = 1  # one cluster in use: no cap
    assert workers._enter("slow", first) and workers._enter("slow", second)


def queue_item(ref: CredentialRef) -> Item[CredentialRef]:
    return Item(ref, "reconcile", "watch", 0.0)
