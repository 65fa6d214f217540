"""Unit tests of the trigger building blocks: work queue, schedules, detection, webhook logic."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vaultbridge.triggers.detect import AgentFileWatcher, Poller, Source, parse_agent_file
from vaultbridge.triggers.schedules import InvalidSchedule, Schedules, missed_since, parse_cron
from vaultbridge.triggers.webhook import Authorizer, Rejected, TriggerEndpoint
from vaultbridge.triggers.workqueue import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- work queue ----------------------------------------------------------------------------------


def test_queue_merges_adds_for_one_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    assert q.add("a", trigger="webhook")
    assert not q.add("a", trigger="poll")
    assert not q.add("a", "rotate", trigger="schedule")
    item = q.get(timeout=0)
    assert item is not None
    assert (item.key, item.action, item.trigger, item.merged) == ("a", "rotate", "schedule", 3)
    assert q.get(timeout=0) is None


def test_queue_never_hands_out_a_key_in_flight() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    first = q.get(timeout=0)
    assert first is not None
    q.add("a")
    q.add("b")
    second = q.get(timeout=0)
    assert second is not None and second.key == "b"
    assert q.get(timeout=0) is None  # "a" waits until done
    q.done("a")
    again = q.get(timeout=0)
    assert again is not None and again.key == "a"


def test_queue_min_interval_and_delay() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("a")
    item = q.get(timeout=0)
    assert item is not None
    q.done("a", not_before=clock.now + 5)
    q.add("a")
    assert q.get(timeout=0) is None
    clock.now += 5
    assert q.get(timeout=0) is not None
    q.done("a")
    q.add("b", delay=3)
    assert q.get(timeout=0) is None
    clock.now += 3
    got = q.get(timeout=0)
    assert got is not None and got.key == "b"


def test_a_retry_added_during_the_work_keeps_its_backoff() -> None:
    """The worker adds the failure's retry (with its backoff) before it calls done(): done()
    must not hand the key out again after only the minimum interval (a 2 s hot loop)."""
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("a")
    assert q.get(timeout=0) is not None
    q.add("a", trigger="retry", delay=60)
    q.done("a", not_before=clock.now + 2)
    clock.now += 3
    assert q.get(timeout=0) is None
    clock.now += 57
    got = q.get(timeout=0)
    assert got is not None and got.trigger == "retry"
    q.done("a")
    # a real change during the work still runs right after it: the earliest add wins
    q.add("a", trigger="retry", delay=60)
    assert q.get(timeout=0) is None
    q.add("a", trigger="watch")
    assert q.get(timeout=0) is not None
    q.add("a", trigger="retry", delay=60)
    q.add("a", trigger="watch")
    q.done("a", not_before=clock.now + 2)
    clock.now += 2
    assert q.get(timeout=0) is not None


def test_queue_clear_and_close() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.clear()
    assert q.get(timeout=0) is None
    q.close()
    assert not q.add("c")
    assert q.get() is None  # closed: does not block


def test_queue_one_in_flight_under_threads() -> None:
    q: WorkQueue[int] = WorkQueue()
    running: dict[int, int] = {}
    worst = 0
    lock = threading.Lock()
    processed = 0

    def worker() -> None:
        nonlocal worst, processed
        while True:
            item = q.get(timeout=0.2)
            if item is None:
                return
            with lock:
                running[item.key] = running.get(item.key, 0) + 1
                worst = max(worst, running[item.key])
                processed += 1
            with lock:
                running[item.key] -= 1
            q.done(item.key)

    for n in range(2000):
        q.add(n % 5)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for n in range(2000):
        q.add(n % 5)
    for t in threads:
        t.join()
    assert worst == 1
    assert processed >= 5


# -- schedules -----------------------------------------------------------------------------------


def test_parse_cron_rejects_bad_expressions() -> None:
    with pytest.raises(InvalidSchedule, match="5 fields"):
        parse_cron("* * *")
    with pytest.raises(InvalidSchedule, match="61"):
        parse_cron("61 * * * *")
    assert parse_cron("0 3 * * 0") is not None


def test_missed_since() -> None:
    now = datetime(2024, 1, 8, 12, 0, tzinfo=UTC)  # a Monday
    assert missed_since("0 3 * * *", now - timedelta(days=1), now)
    assert not missed_since("0 3 * * *", now - timedelta(hours=2), now)
    assert not missed_since("0 3 * * *", None, now)


def test_schedules_jobs_follow_specs_and_run_now() -> None:
    fired: list[str] = []
    done = threading.Event()

    def fire(key: str) -> None:
        fired.append(key)
        done.set()

    schedules: Schedules[str] = Schedules(fire)
    schedules.start()
    try:
        schedules.set("a", "0 3 * * 0")
        schedules.set("b", "0 4 * * *")
        assert sorted(schedules.keys()) == ["a", "b"]
        schedules.set("b", None)  # suspended / schedule removed
        assert schedules.keys() == ["a"]
        with pytest.raises(InvalidSchedule):
            schedules.set("a", "99 * * * *")
        assert schedules.keys() == []  # a bad schedule leaves no job behind
        schedules.set("c", "0 5 * * *")
        assert schedules.run_now("c")
        assert not schedules.run_now("zz")
        assert done.wait(10)
        assert fired == ["c"]
        assert schedules.next_run("c") is not None  # back on its cron
    finally:
        schedules.shutdown()


def test_schedule_missed_while_down_runs_once() -> None:
    fired: list[str] = []
    event = threading.Event()
    schedules: Schedules[str] = Schedules(lambda k: (fired.append(k), event.set()))
    schedules.start()
    try:
        last = datetime.now(UTC) - timedelta(days=3)  # three daily slots missed
        schedules.set("a", "0 3 * * *", last_rotation=last)
        assert event.wait(10)
        event.clear()
        assert not event.wait(1.0)
        assert fired == ["a"]
    finally:
        schedules.shutdown()


# -- detection -----------------------------------------------------------------------------------


def test_poller_budget_and_round_robin() -> None:
    calls: list[str] = []
    versions = {"p0": 1, "p1": 2, "p2": 3}
    sources = [Source(f"c{n}", "secret", f"p{n}", 1) for n in range(3)]
    queued: list[tuple[str, str]] = []

    def current(mount: str, path: str) -> int:
        calls.append(path)
        return versions[path]

    poller = Poller(lambda: sources, current, lambda k, why: queued.append((k, why)), budget=2)
    assert poller.cycle() == ["c1"]
    assert calls == ["p0", "p1"]
    assert poller.cycle() == ["c2"]
    assert calls == ["p0", "p1", "p2", "p0"]


def test_a_catch_up_reads_no_source_that_is_skipped() -> None:
    calls: list[str] = []
    sources = [Source("c0", "secret", "p0", 1), Source("c1", "secret", "p1", 1)]
    sources.append(Source("c2", "secret", "p1", 1))  # two credentials on one path

    def current(mount: str, path: str) -> int:
        calls.append(path)
        return 2

    poller = Poller(lambda: sources, current, lambda k, why: None, budget=1)
    assert poller.cycle(unlimited=True, skip=lambda key: key in ("c0", "c1")) == ["c2"]
    assert calls == ["p1"]  # p0's only credential is queued already: not read
    assert poller.cycle(unlimited=True, skip=lambda key: True) == []
    assert calls == ["p1"]


def test_agent_file(tmp_path: Path) -> None:
    assert parse_agent_file("# rendered\nsecret/ceph/a\n\nsecret/ceph/b@4\nnot a path\n") == {
        "secret/ceph/a",
        "secret/ceph/b",
    }
    path = tmp_path / "agent.txt"
    path.write_text("secret/x\n")
    queued: list[str] = []
    checked: list[int] = []
    sources = [Source("cx", "secret", "x", 1), Source("cy", "secret", "y", 1)]
    watcher = AgentFileWatcher(
        path, lambda: sources, lambda k, why: queued.append(k), lambda: checked.append(1)
    )
    watcher.prime()
    assert watcher.check() is None
    path.write_text("secret/x\nsecret/y\n")
    assert watcher.check() == ["cx", "cy"]
    path.write_text("password=rendered-secret-content\n")
    assert watcher.check() == []
    assert checked == [1]


# -- webhook -------------------------------------------------------------------------------------


def endpoint() -> tuple[TriggerEndpoint[str], list[str]]:
    queued: list[str] = []
    ep: TriggerEndpoint[str] = TriggerEndpoint(
        lambda m, p: ["ns/a"] if (m, p) == ("secret", "ceph/a") else [],
        lambda ns, name: f"{ns}/{name}" if name == "a" else None,
        lambda k, why: queued.append(k),
    )
    return ep, queued


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{not json", 400),
        (b"[]", 400),
        (b'{"mount": "secret"}', 400),
        (b'{"mount": "secret", "path": "nope"}', 404),
        (b'{"credential": "ns/b"}', 404),
        (b'{"credential": "no-slash"}', 400),
        (b'{"credential": "ns/a", "path": "x"}', 400),
        (b'{"extra": 1}', 400),
        (b"x" * 70000, 413),
    ],
)
def test_webhook_bad_bodies(body: bytes, status: int) -> None:
    ep, queued = endpoint()
    code, reply = ep.handle(body)
    assert code == status
    assert reply["error"]
    assert queued == []


def test_webhook_queues() -> None:
    ep, queued = endpoint()
    assert ep.handle(b'{"mount": "secret", "path": "/ceph/a"}') == (202, {"queued": ["ns/a"]})
    assert ep.handle(json.dumps({"credential": "ns/a"}).encode()) == (202, {"queued": ["ns/a"]})
    assert queued == ["ns/a", "ns/a"]


def test_authorizer() -> None:
    reviews: list[str] = []

    def review(token: str) -> tuple[bool, str | None]:
        reviews.append(token)
        if token == "sa-token":
            return True, "system:serviceaccount:ci:pipeline"
        if token == "user-token":
            return True, "alice"
        return False, None

    auth = Authorizer("shared-secret-token", review=review)
    assert auth.check("Bearer shared-secret-token") == "shared-token"
    assert auth.check("Bearer sa-token") == "system:serviceaccount:ci:pipeline"
    assert auth.check("bearer sa-token") == "system:serviceaccount:ci:pipeline"
    assert reviews.count("sa-token") == 1  # cached
    for header, status in [
        (None, 401),
        ("Basic abc", 401),
        ("Bearer ", 401),
        ("Bearer wrong", 401),
        ("Bearer user-token", 403),
    ]:
        with pytest.raises(Rejected) as caught:
            auth.check(header)
        assert caught.value.status == status
        assert "wrong" not in caught.value.message
    restricted = Authorizer(None, review=review, allowed_subjects=("system:serviceaccount:x:y",))
    with pytest.raises(Rejected) as caught:
        restricted.check("Bearer sa-token")
    assert caught.value.status == 403


def test_authorizer_when_token_review_fails() -> None:
    """A TokenReview the API server forbids is a refusal (401), not a 'retry later' (503);
    an API server that is down is a 503."""

    class Forbidden(Exception):
        transient = False

    class Unavailable(Exception):
        transient = True

    def forbidden(token: str) -> tuple[bool, str | None]:
        raise Forbidden("tokenreviews is forbidden")

    def unavailable(token: str) -> tuple[bool, str | None]:
        raise Unavailable("connection refused")

    for review, status in ((forbidden, 401), (unavailable, 503)):
        auth = Authorizer("shared-secret-token", review=review)
        assert auth.check("Bearer shared-secret-token") == "shared-token"
        with pytest.raises(Rejected) as caught:
            auth.check("Bearer wrong-token")
        assert caught.value.status == status
        assert "wrong-token" not in caught.value.message


def test_a_poll_cycle_stops_at_the_first_sign_that_vault_is_down() -> None:
    class VaultUnavailable(Exception):
        pass

    asked: list[str] = []

    def current_version(mount: str, path: str) -> int:
        asked.append(path)
        raise VaultUnavailable("no answer")

    sources = [Source(f"k{i}", "secret", f"p{i}", 1) for i in range(10)]
    poller: Poller[str] = Poller(
        lambda: sources,
        current_version,
        lambda key, why: None,
        budget=10,
        unavailable=lambda exc: type(exc).__name__ == "VaultUnavailable",
    )
    assert poller.cycle() == [] and asked == ["p0"] and poller.cut_short == 1
    assert poller.cycle() == [] and asked == ["p0", "p0"]  # the same path first, next time
