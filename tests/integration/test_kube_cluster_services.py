"""Events, leader election, ServiceAccount tokens and error translation against a real API."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from vaultbridge.kube import (
    CredentialRotationClient,
    EventRecorder,
    KubeClient,
    KubeForbidden,
    KubeNotFound,
    KubeUnauthorized,
    KubeUnavailable,
    LeaderElector,
    ObjectRef,
    SecretSink,
    TokenClient,
)
from vaultbridge.model.sensitive import Sensitive

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "vaultbridge" / "crds" / "credentialrotations.yaml"


@pytest.fixture(scope="module")
def kube(kube_cluster: Any) -> Iterator[KubeClient]:
    client = KubeClient.from_settings(str(kube_cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module")
def crs(kube: KubeClient) -> CredentialRotationClient:
    client = CredentialRotationClient(kube)
    client.install_crd(CHART_CRD)
    return client


@pytest.fixture
def core(kube: KubeClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube.api_client)


@pytest.fixture
def namespace(core: k8s.CoreV1Api) -> Iterator[str]:
    name = f"vb-svc-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _cr(crs: CredentialRotationClient, namespace: str, name: str) -> dict[str, Any]:
    spec = {"secret": {"name": f"{name}-secret"}, "target": {"configKey": {"key": "k"}}}
    return crs.create(namespace, {"metadata": {"name": name}, "spec": spec})


# -- events ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_events_are_recorded(
    crs: CredentialRotationClient, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "ev")
    recorder = EventRecorder(kube)
    ref = ObjectRef.of(cr)
    assert recorder.emit(ref, "Normal", "Applied", "version 3 applied to the mon config db")
    assert recorder.emit(ref, "Warning", "RolledBack", "verification failed: " + "x" * 3000)
    events = k8s.EventsV1Api(kube.api_client).list_namespaced_event(namespace).items
    mine = [e for e in events if e.regarding.uid == cr["metadata"]["uid"]]
    assert {(e.type, e.reason) for e in mine} == {("Normal", "Applied"), ("Warning", "RolledBack")}
    for event in mine:
        assert event.reporting_controller == "vaultbridge.io/vaultbridge"
        assert event.regarding.kind == "CredentialRotation"
        assert len(event.note.encode()) <= 1024
    # core/v1 readers (kubectl describe) see them too
    core_events = k8s.CoreV1Api(kube.api_client).list_namespaced_event(namespace).items
    assert any(e.involved_object.uid == cr["metadata"]["uid"] for e in core_events)


@pytest.mark.integration
def test_event_failure_does_not_raise(kube: KubeClient, caplog: pytest.LogCaptureFixture) -> None:
    recorder = EventRecorder(kube)
    ref = ObjectRef(
        "no-such-namespace-xyz", "x", "uid", "CredentialRotation", "vaultbridge.io/v1alpha1"
    )
    assert recorder.emit(ref, "Normal", "Applied", "hello") is None
    assert "could not record Event Applied" in caplog.text


# -- leader election ------------------------------------------------------------------------


@pytest.mark.integration
def test_only_one_leader_and_takeover_after_expiry(kube: KubeClient, namespace: str) -> None:
    timing = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
    a = LeaderElector(kube, namespace, "vaultbridge", "a", **timing)
    b = LeaderElector(kube, namespace, "vaultbridge", "b", **timing)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    assert a.is_leader and not b.is_leader
    # a keeps renewing: b never gets it
    for _ in range(4):
        time.sleep(1.0)
        assert a.try_acquire_or_renew() is True
        assert b.try_acquire_or_renew() is False
    lease = k8s.CoordinationV1Api(kube.api_client).read_namespaced_lease("vaultbridge", namespace)
    assert lease.spec.holder_identity == "a"
    assert lease.spec.lease_transitions == 0
    # a stops (crashes): b takes over once the lease has expired by b's own clock
    started = time.monotonic()
    while not b.try_acquire_or_renew():
        assert time.monotonic() - started < 10
        time.sleep(0.5)
    assert 2.0 < time.monotonic() - started < 6.0
    assert b.is_leader
    lease = k8s.CoordinationV1Api(kube.api_client).read_namespaced_lease("vaultbridge", namespace)
    assert lease.spec.holder_identity == "b"
    assert lease.spec.lease_transitions == 1
    # a comes back: it is not the leader any more
    assert a.try_acquire_or_renew() is False
    assert not a.is_leader
    # b releases: a gets it at the next try, without waiting for expiry
    b.release()
    assert not b.is_leader
    assert a.try_acquire_or_renew() is True
    assert a.is_leader


class _Counting:
    """The elector's client, counting the requests it sends (each watch is one)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube, self.sent = kube, 0
        original = kube.api_client.rest_client.pool_manager.request

        def request(*args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            return original(*args, **kwargs)

        kube.api_client.rest_client.pool_manager.request = request


@pytest.mark.integration
def test_a_standby_watches_the_lease_and_takes_it_when_released(
    kube: KubeClient, kube_cluster: Any, namespace: str
) -> None:
    timing = {"lease_duration": 6.0, "renew_deadline": 4.0, "retry_period": 0.5}
    standby_kube = KubeClient.from_kubeconfig(kube_cluster.kubeconfig)
    counted = _Counting(standby_kube)
    a = LeaderElector(kube, namespace, "vaultbridge", "a", **timing)
    b = LeaderElector(standby_kube, namespace, "vaultbridge", "b", **timing)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    stop, beats, renewing = threading.Event(), [], threading.Event()
    renewing.set()

    def leader() -> None:
        while renewing.is_set():
            a.try_acquire_or_renew()
            time.sleep(0.5)

    threading.Thread(target=leader, daemon=True).start()
    sent_before, began = counted.sent, time.monotonic()
    outcome: list[bool] = []
    waiter = threading.Thread(
        target=lambda: outcome.append(b.wait_as_standby(stop, lambda: beats.append(1)))
    )
    waiter.start()
    time.sleep(4.0)  # eight renewals by a, seen on the one watch
    assert waiter.is_alive() and len(beats) >= 5
    assert counted.sent - sent_before == 1  # polling at 0.5 s would have read it 8 times
    renewing.clear()
    time.sleep(0.6)
    released_at = time.monotonic()
    a.release()
    waiter.join(timeout=5)
    assert outcome == [True]  # the release ended the wait at once
    assert time.monotonic() - released_at < 2.0, time.monotonic() - began
    assert b.try_acquire_or_renew() and b.is_leader
    standby_kube.close()


@pytest.mark.integration
def test_a_standby_watching_a_dead_leader_takes_over_after_its_lease(
    kube: KubeClient, namespace: str
) -> None:
    timing = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.5}
    a = LeaderElector(kube, namespace, "vaultbridge", "a", **timing)
    b = LeaderElector(kube, namespace, "vaultbridge", "b", **timing)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    began = time.monotonic()  # a dies now: it never renews again
    while not b.try_acquire_or_renew():
        assert b.wait_as_standby(threading.Event(), lambda: None) is False
        assert time.monotonic() - began < 10
    assert 3.0 <= time.monotonic() - began < 6.0
    assert b.is_leader and not a.try_acquire_or_renew()


@pytest.mark.integration
def test_a_standby_whose_watch_fails_returns_at_once(kube: KubeClient, namespace: str) -> None:
    a = LeaderElector(kube, namespace, "vaultbridge", "a")
    b = LeaderElector(kube, namespace, "vaultbridge", "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    k8s.CoordinationV1Api(kube.api_client).delete_namespaced_lease("vaultbridge", namespace)
    began = time.monotonic()
    assert b.wait_as_standby(threading.Event(), lambda: None) is True  # deleted: free
    assert time.monotonic() - began < 2.0
    assert b.try_acquire_or_renew()


@pytest.mark.integration
def test_candidates_racing_never_both_lead(kube: KubeClient, namespace: str) -> None:
    electors = [LeaderElector(kube, namespace, "race", f"c{i}") for i in range(4)]
    with ThreadPoolExecutor(max_workers=len(electors)) as pool:
        for _ in range(5):
            barrier = threading.Barrier(len(electors))

            def attempt(elector: LeaderElector, barrier: threading.Barrier = barrier) -> bool:
                barrier.wait()
                return elector.try_acquire_or_renew()

            results = list(pool.map(attempt, electors))
            assert sum(results) == 1, results
            assert sum(e.is_leader for e in electors) == 1


# -- tokens ---------------------------------------------------------------------------------


@pytest.fixture
def service_account(core: k8s.CoreV1Api, namespace: str) -> str:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    return "nobody"


@pytest.mark.integration
def test_token_request_and_review_round_trip(
    kube: KubeClient, namespace: str, service_account: str
) -> None:
    tokens = TokenClient(kube)
    token = tokens.request_token(namespace, service_account, None, 600)
    assert isinstance(token, Sensitive)
    assert token.reveal().count(".") == 2  # a JWT
    authenticated, username = tokens.review_token(token)
    assert authenticated is True
    assert username == f"system:serviceaccount:{namespace}:{service_account}"
    # audiences: a token for "vault" is not accepted for the API server's audience
    vault_token = tokens.request_token(namespace, service_account, ["vault"], 600)
    assert tokens.review_token(vault_token, ["vault"]) == (authenticated, username)
    assert tokens.review_token(vault_token)[0] is False
    assert tokens.review_token("not-a-token") == (False, None)
    with pytest.raises(KubeNotFound, match="serviceaccounts/token"):
        tokens.request_token(namespace, "missing", None, 600)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_forbidden_names_verb_resource_and_namespace(
    kube: KubeClient, kube_cluster: Any, namespace: str, service_account: str
) -> None:
    token = TokenClient(kube).request_token(namespace, service_account, None, 600)
    weak = KubeClient.from_token(kube_cluster.server, token, ca_cert=kube_cluster.ca_cert)
    try:
        with pytest.raises(KubeForbidden) as caught:
            SecretSink(weak).get(namespace, "anything")
        message = str(caught.value)
        assert "get secrets 'anything'" in message
        assert namespace in message
        assert caught.value.verb == "get"
        assert caught.value.resource == "secrets"
        assert caught.value.namespace == namespace
        assert token.reveal() not in message
        with pytest.raises(KubeForbidden, match="list credentialrotations"):
            CredentialRotationClient(weak).list([namespace])
        with pytest.raises(KubeForbidden, match="update credentialrotations/status"):
            CredentialRotationClient(weak).write_status(namespace, "x", {"phase": "Idle"})
    finally:
        weak.close()
    bogus = KubeClient.from_token(kube_cluster.server, "garbage", ca_cert=kube_cluster.ca_cert)
    try:
        with pytest.raises(KubeUnauthorized):
            SecretSink(bogus).get(namespace, "anything")
    finally:
        bogus.close()


@pytest.mark.integration
def test_not_found(crs: CredentialRotationClient, namespace: str) -> None:
    with pytest.raises(KubeNotFound) as caught:
        crs.get(namespace, "missing")
    assert "get credentialrotations 'missing'" in str(caught.value)
    assert namespace in str(caught.value)


@pytest.mark.integration
def test_unreachable_server_is_unavailable(kube_cluster: Any) -> None:
    dead = KubeClient.from_token(
        "https://127.0.0.1:9", "t", ca_cert=kube_cluster.ca_cert, timeout=2
    )
    dead.api_client.configuration.retries = 0
    try:
        started = time.monotonic()
        with pytest.raises(KubeUnavailable) as caught:
            SecretSink(dead).get("default", "x")
        assert caught.value.transient
        assert time.monotonic() - started < 10
    finally:
        dead.close()


@pytest.mark.integration
def test_conditional_status_writes_in_a_row(crs: CredentialRotationClient, namespace: str) -> None:
    obj = _cr(crs, namespace, "lat")
    version = obj["metadata"]["resourceVersion"]
    for i in range(20):
        obj = crs.write_status(namespace, "lat", {"phase": "Idle", "currentVersion": i}, version)
        assert obj["metadata"]["resourceVersion"] != version
        version = obj["metadata"]["resourceVersion"]
    assert crs.get(namespace, "lat")["status"] == {"phase": "Idle", "currentVersion": 19}
