"""Outages under the controller: a backend down while 100 credentials have rotations due.

``vaultbridge run`` reaches the backend through a fault proxy that resets every connection for
the outage (``make test``: 1 minute; ``make chaos``: 2 minutes). During it, nothing is
mutated anywhere, and the requests that reach the proxy stay within 15 a minute in all: after
three unavailabilities in a row the controller holds its work and sends one probe at a time
(controller/outage.py). Once the backend answers again, every credential is promoted within one
probe step (at most 30 s) plus the time to rotate them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from controller_helpers import (
    ControllerProcess,
    at_version,
    config_key_spec,
    create_cr,
    get_cr,
    http,
    namespace,
    vault_put,
    wait_for,
)
from fault_helpers import Wired, report_line
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from vaultbridge.controller.outage import PROBE_CAP
from vaultbridge.testenv.kube import start_kube

pytestmark = pytest.mark.integration

COUNT = 100
OUTAGE = 120.0 if os.environ.get("VAULTBRIDGE_CHAOS") == "1" else 60.0
PER_MINUTE = 15


def _config_keys(wired: Wired, prefix: str) -> dict[str, str]:
    admin = wired.admin()
    try:
        listed = json.loads(admin.mon_command({"prefix": "config-key dump", "key": prefix}))
    finally:
        admin.close()
    return {k: str(v) for k, v in listed.items()}


def _secret_versions(api: k8s.ApiClient, ns: str) -> dict[str, str]:
    found = k8s.CoreV1Api(api).list_namespaced_secret(ns)
    return {s.metadata.name: s.metadata.resource_version for s in found.items}


def _at_version_1(
    wired: Wired,
    api: k8s.ApiClient,
    ns: str,
    tmp_path: Path,
    prefix: str,
    paths: list[str],
    **settings: str,
) -> ControllerProcess:
    """A config-key credential ``c<i>`` per Vault path, and ``vaultbridge run`` on the suite's
    own mon once it promoted them all at version 1."""
    for i, path in enumerate(paths):
        vault_put(wired.env, path, {"value": f"one-{i}"})
        create_cr(api, ns, f"c{i}", config_key_spec(path, f"c{i}", f"{prefix}/c{i}"))
    controller = ControllerProcess(
        wired.env,
        ns,
        tmp_path,
        VAULTBRIDGE_CEPH__CONF=str(wired.cluster.conf),
        VAULTBRIDGE_CEPH__KEYRING=str(wired.cluster.admin_keyring),
        VAULTBRIDGE_CEPH__USER=wired.cluster.user,
        **settings,
    )
    try:
        controller.wait_leader()
        wait_for(
            lambda: all(at_version(api, ns, f"c{i}", 1) for i in range(len(paths))),
            "every credential promoted at version 1",
            timeout=180,
            interval=1.0,
        )
    except BaseException:
        controller.stop()
        raise
    return controller


def _version_2(wired: Wired, controller: ControllerProcess, paths: list[str]) -> None:
    """Version 2 of each path, written past the proxies, each one triggered by the webhook."""
    for path in paths:
        vault_put(wired.env, path, {"value": f"two-{path}"})
        status, body = http(
            "POST", controller.url + "/v1/trigger", {"mount": "secret", "path": path}
        )
        assert status == 202, body


class Outage:
    """One backend down and back: Vault behind a proxy resetting every connection, or the
    suite's only mon stopped (quorum lost). ``requests()``: vaultbridge's requests to it so far
    (for Vault, the connections that reached the proxy; for Ceph, its mon commands, since
    librados's own reconnection attempts are not vaultbridge's)."""

    def __init__(self, wired: Wired, backend: str) -> None:
        self.wired, self.backend = wired, backend
        self.controller: ControllerProcess | None = None

    def start(self) -> None:
        if self.backend == "vault":
            self.wired.proxies["vault"].reset()
        else:
            self.wired.cluster.stop_mon("a", wait_quorum=False)

    def end(self) -> None:
        if self.backend == "vault":
            self.wired.proxies["vault"].clear()
        else:
            self.wired.cluster.start_mon("a")

    def requests(self) -> float:
        if self.backend == "vault":
            return float(self.wired.proxies["vault"].counts["accepted"])
        assert self.controller is not None
        return self.controller.metric('vaultbridge_backend_requests_total{backend="ceph"}')


@pytest.mark.parametrize("backend", ["vault", "ceph"])
def test_a_backend_down_while_100_rotations_are_due(
    wired: Wired, api: k8s.ApiClient, ns: str, tmp_path: Path, backend: str
) -> None:
    proxy = wired.proxies["vault"]
    outage = Outage(wired, backend)
    prefix = f"vaultbridge/outage/{ns}"
    paths = [f"outage/{ns}/c{i}" for i in range(COUNT)]
    controller = outage.controller = _at_version_1(
        wired,
        api,
        ns,
        tmp_path,
        prefix,
        paths,
        VAULTBRIDGE_VAULT__ADDR=f"http://{proxy.address}",
        VAULTBRIDGE_VAULT__TIMEOUT="2",
        VAULTBRIDGE_CEPH__TIMEOUT="2",
        VAULTBRIDGE_TRIGGERS__POLL_INTERVAL="30",  # the default poll runs through the outage
    )
    try:
        before_ceph, before_secrets = _config_keys(wired, prefix), _secret_versions(api, ns)
        outage.start()
        began, counted = time.monotonic(), outage.requests()
        _version_2(wired, controller, paths)
        per_minute: list[int] = []
        while (elapsed := time.monotonic() - began) < OUTAGE - 1:
            time.sleep(min(60.0 - elapsed % 60, OUTAGE - elapsed))
            now = outage.requests()
            per_minute.append(round(now - counted))
            counted = now
        held = controller.metric("vaultbridge_held_credentials")
        down = controller.metric(f'vaultbridge_backend_down{{backend="{backend}"}}')
        secrets_during = _secret_versions(api, ns)
        # Ceph as the outage leaves it (the mons are down in the other case: nothing to read)
        ceph_during = _config_keys(wired, prefix) if backend == "vault" else before_ceph
        outage.end()
        cleared = time.monotonic()
        wait_for(
            lambda: all(at_version(api, ns, f"c{i}", 2) for i in range(COUNT)),
            "every credential promoted at version 2 after the outage",
            timeout=PROBE_CAP + 120,
            interval=0.5,
        )
        recovered = time.monotonic() - cleared
        values = _config_keys(wired, prefix)
    finally:
        controller.stop()
    print(
        f"{backend} outage {OUTAGE:.0f} s, {COUNT} rotations due: requests {per_minute} a"
        f" minute; {held:.0f} held, gate down={down:.0f}; all promoted {recovered:.1f} s after"
        " recovery"
    )
    report_line(
        {
            "suite": "outage",
            "backend": backend,
            "outage_s": OUTAGE,
            "credentials": COUNT,
            "requests_per_minute": per_minute,
            "held": held,
            "secrets_written": sum(
                1 for k, v in secrets_during.items() if before_secrets.get(k) != v
            ),
            "recovered_s": round(recovered, 1),
            "lost": sum(
                1 for i, path in enumerate(paths) if values.get(f"{prefix}/c{i}") != f"two-{path}"
            ),
        }
    )
    assert secrets_during == before_secrets  # no Secret written during the outage
    assert ceph_during == before_ceph  # nor anything in Ceph
    assert down == 1 and held >= COUNT - 10
    assert all(n <= PER_MINUTE for n in per_minute), per_minute
    assert recovered <= PROBE_CAP + 60
    assert values == {f"{prefix}/c{i}": f"two-{path}" for i, path in enumerate(paths)}


KUBE_OUTAGE = 120.0 if os.environ.get("VAULTBRIDGE_CHAOS") == "1" else 30.0
IN_FLIGHT = 20
# every rotation at once, each waiting 3 s between Apply and Verify: the outage finds them there
MID_ROTATION = {
    "VAULTBRIDGE_CONTROLLER__MAX_CONCURRENT_ROTATIONS": str(IN_FLIGHT),
    "VAULTBRIDGE_FAULT": "pause-after:Apply:3",
}


def test_the_api_server_unreachable_in_the_middle_of_rotations(
    wired: Wired, api: k8s.ApiClient, ns: str, tmp_path: Path
) -> None:
    """Every connection to the API server reset while rotations are between Apply and Verify:
    the leader loses its Lease and stops before its next step; once the API server answers, it
    leads again, resumes the journaled rotations and follows its watches again. Each credential
    ends at the new version with one promotion recorded, and nothing is lost."""
    proxy = wired.proxies["kubernetes"]
    prefix = f"vaultbridge/kube-outage/{ns}"
    paths = [f"kube-outage/{ns}/c{i}" for i in range(IN_FLIGHT)]
    controller = _at_version_1(
        wired,
        api,
        ns,
        tmp_path,
        prefix,
        paths,
        VAULTBRIDGE_KUBE__KUBECONFIG=str(wired.kubeconfig),
        **MID_ROTATION,
    )
    try:
        restarts_before = controller.metric("vaultbridge_watch_relists_total")
        _version_2(wired, controller, paths)

        wait_for(lambda: _in_flight(api, ns) >= IN_FLIGHT // 2, "rotations in flight", timeout=60)
        proxy.reset()
        began = time.monotonic()
        time.sleep(KUBE_OUTAGE)
        arrivals = [t - began for t in proxy.accepted_at if t >= began]
        attempts = len(arrivals)
        first_10s = sum(1 for t in arrivals if t < 10)
        last_minute = [t for t in arrivals if t >= KUBE_OUTAGE - 60]
        journals_during = _in_flight(api, ns)
        relists_during = controller.metric("vaultbridge_watch_relists_total") - restarts_before
        proxy.clear()
        cleared = time.monotonic()
        wait_for(
            lambda: all(at_version(api, ns, f"c{i}", 2) for i in range(IN_FLIGHT)),
            "every credential promoted at version 2 after the API server came back",
            timeout=180,
            interval=0.5,
        )
        recovered = time.monotonic() - cleared
        restarts = controller.metric("vaultbridge_watch_relists_total") - restarts_before
        relists_after = restarts - relists_during
        values = _config_keys(wired, prefix)
        histories = [_results_of(api, ns, f"c{i}", 2) for i in range(IN_FLIGHT)]
    finally:
        controller.stop()
    print(
        f"API server unreachable {KUBE_OUTAGE:.0f} s with {journals_during} rotations journaled:"
        f" {attempts} connection attempts ({first_10s} in the first 10 s, as the rotations in"
        f" flight fail; {len(last_minute)} in the last minute); all promoted"
        f" {recovered:.1f} s after;"
        f" relists: {relists_during:.0f} tried during it (backing off), {relists_after:.0f} after"
    )
    report_line(
        {
            "suite": "outage",
            "backend": "kubernetes",
            "outage_s": KUBE_OUTAGE,
            "credentials": IN_FLIGHT,
            "requests_per_minute": [len(last_minute)],
            "held": journals_during,
            "secrets_written": 0,
            "recovered_s": round(recovered, 1),
            "lost": sum(
                1 for i, path in enumerate(paths) if values.get(f"{prefix}/c{i}") != f"two-{path}"
            ),
        }
    )
    assert values == {f"{prefix}/c{i}": f"two-{path}" for i, path in enumerate(paths)}
    assert all(h.count("Promoted") == 1 for h in histories), histories
    # past the first seconds (the rotations in flight failing), the breaker lets one request
    # through per pause: at most 15 a minute in all
    assert len([t for t in arrivals if t >= 10]) <= PER_MINUTE * (KUBE_OUTAGE - 10) / 60 + 4
    assert len(last_minute) <= PER_MINUTE or KUBE_OUTAGE < 60
    # each watch lists again on a doubling backoff during the outage, and once or twice after
    assert relists_during <= 2 * 8 and relists_after <= 4


RESTART_DOWN = 60.0 if os.environ.get("VAULTBRIDGE_CHAOS") == "1" else 10.0


def test_etcd_and_the_api_server_restarted_in_the_middle_of_rotations(
    wired: Wired, tmp_path: Path
) -> None:
    """A real restart of the control plane (its own etcd and kube-apiserver, so that no other
    test sees it) while rotations sit between Apply and Verify: the watches resume, the
    journaled rotations finish, one promotion each."""
    kube = start_kube(tmp_path / "kube")
    try:
        api = k8s_config.new_client_from_config(config_file=str(kube.kubeconfig))
        with namespace(api) as ns:
            prefix = f"vaultbridge/restart/{ns}"
            paths = [f"restart/{ns}/c{i}" for i in range(IN_FLIGHT)]
            controller = _at_version_1(
                wired,
                api,
                ns,
                tmp_path,
                prefix,
                paths,
                VAULTBRIDGE_KUBE__KUBECONFIG=str(kube.kubeconfig),
                **MID_ROTATION,
            )
            try:
                relists_before = controller.metric("vaultbridge_watch_relists_total")
                _version_2(wired, controller, paths)
                wait_for(
                    lambda: _in_flight(api, ns) >= IN_FLIGHT // 2, "rotations in flight", timeout=60
                )
                unanswered = kube.restart_control_plane(down=RESTART_DOWN)
                back = time.monotonic()
                wait_for(
                    lambda: all(at_version(api, ns, f"c{i}", 2) for i in range(IN_FLIGHT)),
                    "every credential promoted at version 2 after the restart",
                    timeout=180,
                    interval=0.5,
                )
                recovered = time.monotonic() - back
                relists = controller.metric("vaultbridge_watch_relists_total") - relists_before
                values = _config_keys(wired, prefix)
                histories = [_results_of(api, ns, f"c{i}", 2) for i in range(IN_FLIGHT)]
            finally:
                controller.stop()
    finally:
        kube.stop()
    print(
        f"etcd + kube-apiserver restarted ({unanswered:.1f} s unanswered) with rotations in"
        f" flight: all promoted {recovered:.1f} s after it answered; {relists:.0f} relists"
    )
    report_line(
        {
            "suite": "outage",
            "backend": "kubernetes (etcd + apiserver restart)",
            "outage_s": round(unanswered, 1),
            "credentials": IN_FLIGHT,
            "requests_per_minute": [],
            "held": IN_FLIGHT,
            "secrets_written": 0,
            "recovered_s": round(recovered, 1),
            "lost": sum(
                1 for i, path in enumerate(paths) if values.get(f"{prefix}/c{i}") != f"two-{path}"
            ),
        }
    )
    assert values == {f"{prefix}/c{i}": f"two-{path}" for i, path in enumerate(paths)}
    assert all(h.count("Promoted") == 1 for h in histories), histories
    assert relists <= 2 * 8  # backing off while it was down, not once per credential


def _in_flight(api: k8s.ApiClient, ns: str) -> int:
    found = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations"
    )
    return sum(1 for cr in found["items"] if (cr.get("status") or {}).get("rotation"))


def _results_of(api: k8s.ApiClient, ns: str, name: str, version: int) -> list[str]:
    history = get_cr(api, ns, name)["status"].get("history") or []
    return [h["result"] for h in history if h["version"] == version]
