"""The scale pass: ``vaultbridge run`` over N credentials (10,000 by default): its first sync,
its memory, what it asks of the API server, Vault and the mons while nothing is due, and a
restart over them (issue 16's table).

N config-key credentials (one Vault path each) are created, the controller starts with default
settings except the resync interval (set so that one resync falls inside the idle window), and
once every CR is promoted the benchmark waits ``idle`` seconds. Counted:

- Kubernetes: the API server's own ``apiserver_request_total`` by verb and resource, less the
  other clients' rate measured in a window before vaultbridge starts, on the resources
  vaultbridge uses (Leases, CredentialRotations, Secrets, Events);
- Vault and Ceph: vaultbridge's ``vaultbridge_backend_requests_total`` (each engine port call);
- the controller's RSS after the sync and at the end, and its CPU while idle;
- a restart: a new controller over the same credentials, with the audit push configured,
  until it is caught up (its first drift sweep and its catch-up with Vault done), with what it
  rotated and asked of Ceph and Vault by then; then its Vault requests in an idle window (the
  safety poll).

Figures are per credential-hour, the unit of issue 16's targets. ``--only scale`` runs it
alone; ``--count`` sets N, ``--idle-seconds`` the window.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from tabulate import tabulate

from bench.triggers import GROUP, PLURAL, VERSION, _Controller, clients_and_namespace
from vaultbridge.testenv.env import Environment

COUNT = 10_000
# a whole number of default poll cycles (4 x 30 s): a 130 s window held 4 or 5 cycles of 80
# reads by its phase, 0.89 or 1.11 per credential-hour for a steady 0.96
IDLE = 120.0
OURS = frozenset({"leases", "credentialrotations", "secrets", "events"})
POLL = 2.0  # seconds between looks at the controller's count (one counter's scrape)


def _apiserver_requests(env: Environment) -> float:
    return sum(_apiserver_requests_by_kind(env).values())


def _apiserver_requests_by_kind(env: Environment) -> Counter[str]:
    """The API server's own request counts, by verb and resource (every client)."""
    status, body = env.kube.get("/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"apiserver /metrics answered {status}")
    found: Counter[str] = Counter()
    for line in body.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            kind = f"{labels.get('verb', '?')} {labels.get('resource', '?')}"
            found[kind] += int(float(line.rsplit(" ", 1)[1]))
    return found


def _controller_requests(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics?name[]=vaultbridge_backend_requests_total"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('vaultbridge_backend_requests_total{backend="'):
            backend = line.split('"', 2)[1]
            found[backend] = float(line.rsplit(" ", 1)[1])
    return found


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(port: int, name: str, label: str = "") -> float:
    url = f"http://127.0.0.1:{port}/metrics?name[]={name}"  # not 30,000 credential samples
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line
    )


def _metric_lines(port: int, name: str) -> list[str]:
    url = f"http://127.0.0.1:{port}/metrics?name[]={name}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return [line for line in response.read().decode().splitlines() if line.startswith(name)]


def _restart(
    env: Environment, ns: str, workdir: Path, resync: float, window: float
) -> dict[str, Any]:
    """A new controller over the credentials in step: from its start until it is caught up
    (its first drift sweep and its catch-up with Vault done), and what it rotated and asked of
    Ceph and Vault by then."""
    began = time.monotonic()
    controller = _Controller(
        env,
        ns,
        workdir,
        VAULTBRIDGE_CONTROLLER__RESYNC_INTERVAL=str(round(resync)),
        # the audit push configured: polling becomes the slow safety poll
        VAULTBRIDGE_TRIGGERS__AUDIT_TOKEN=uuid.uuid4().hex,
    )
    try:
        leading = time.monotonic() - began
        while _metric(controller.port, "vaultbridge_catch_ups_total") < 1:
            if time.monotonic() - began > 600:
                raise RuntimeError("idle: the restarted controller never finished a sweep")
            time.sleep(0.2)
        caught_up = time.monotonic() - began
        port = controller.port
        result = {
            "leader_after_s": round(leading, 1),
            "caught_up_s": round(caught_up, 1),
            "promoted": _metric(port, "vaultbridge_rotations_total", 'result="promoted"'),
            "queued_by_sweep": _metric(port, "vaultbridge_drift_due_total"),
            "ceph_requests": _metric(port, "vaultbridge_backend_requests_total", '"ceph"'),
            "vault_requests": _metric(port, "vaultbridge_backend_requests_total", '"vault"'),
            "rss_mb": _rss_mb(controller.proc.pid),
        }
        vault_before, window_began = result["vault_requests"], time.monotonic()
        time.sleep(window)
        vault = _metric(port, "vaultbridge_backend_requests_total", '"vault"') - vault_before
        seconds = time.monotonic() - window_began
        count = len(_metric_lines(port, "vaultbridge_credential_compliant"))
        result["idle_with_push_s"] = round(seconds, 1)
        result["vault_per_credential_hour_with_push"] = round(
            vault * 3600 / seconds / max(count, 1), 4
        )
        return result
    finally:
        controller.stop()


def run(
    env: Environment, log: Callable[[str], None], count: int = COUNT, idle: float = IDLE
) -> dict[str, Any]:
    api, custom, vault, ns, workdir = clients_and_namespace(env, "idle")
    log(f"idle: creating {count} config-key credentials in {ns}")

    def create(i: int) -> None:
        path = f"bench/{ns}/c{i}"
        vault.secrets.kv.v2.create_or_update_secret(
            path=path, secret={"value": f"idle-{i}-{uuid.uuid4().hex[:8]}"}, mount_point="secret"
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CredentialRotation",
            "metadata": {"name": f"c{i}"},
            "spec": {
                "source": {"mount": "secret", "path": path},
                "secret": {"name": f"c{i}"},
                "target": {"configKey": {"key": f"bench/{ns}/c{i}"}},
            },
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    with ThreadPoolExecutor(8) as pool:  # before the controller starts: not measured
        list(pool.map(create, range(count)))

    control_began, control_before = time.monotonic(), _apiserver_requests_by_kind(env)
    time.sleep(20)
    control_seconds = time.monotonic() - control_began
    others = _apiserver_requests_by_kind(env) - control_before
    others_per_s = sum(others.values()) / control_seconds

    resync = max(idle * 0.75, 10.0)  # one resync inside the idle window
    controller = _Controller(
        env, ns, workdir, VAULTBRIDGE_CONTROLLER__RESYNC_INTERVAL=str(round(resync))
    )
    try:
        began = time.monotonic()
        while True:  # the controller's own count: listing 10,000 CRs would load the server
            done = _metric(controller.port, "vaultbridge_rotations_total", 'result="promoted"')
            if done >= count:
                break
            if time.monotonic() - began > 1800:
                raise RuntimeError(f"idle: only {done} of {count} promoted after 30 min")
            time.sleep(POLL)
        synced_s = time.monotonic() - began
        pid = controller.proc.pid
        rss_synced = _rss_mb(pid)
        log(f"idle: {count} promoted in {synced_s:.0f} s; idle for {idle:.0f} s")
        window_began = time.monotonic()
        kube_before = _apiserver_requests_by_kind(env)
        mine_before = _controller_requests(controller.port)
        cpu_before = _cpu_seconds(pid)
        time.sleep(idle)
        seconds = time.monotonic() - window_began
        kube_seen = _apiserver_requests_by_kind(env) - kube_before
        # what the window holds beyond the other clients' rate, by verb and resource; only
        # the resources vaultbridge uses count as its own (the controller-manager's informers
        # restart their watches of some sixty other resources at random moments)
        beyond = {
            kind: round(n - others[kind] / control_seconds * seconds)
            for kind, n in kube_seen.items()
            if round(n - others[kind] / control_seconds * seconds) >= 1
        }
        kube = float(sum(n for kind, n in beyond.items() if kind.split(" ", 1)[1] in OURS))
        unrelated = sum(beyond.values()) - kube
        mine = {
            k: v - mine_before.get(k, 0.0) for k, v in _controller_requests(controller.port).items()
        }
        cpu = (_cpu_seconds(pid) - cpu_before) / seconds
        rss_idle = _rss_mb(pid)
        controller.stop()
        restart = _restart(env, ns, workdir, resync, idle)
    finally:
        controller.stop()
        k8s.CoreV1Api(api).delete_namespace(ns)

    per_hour = 3600.0 / seconds / count

    def rate(n: float) -> float:
        return round(n * per_hour, 3)

    result = {
        "credentials": count,
        "resync_interval_s": round(resync),
        "first_sync_s": round(synced_s, 1),
        "idle_window_s": round(seconds, 1),
        "rss_mb_after_sync": rss_synced,
        "rss_mb_idle": rss_idle,
        "idle_cpu_fraction_of_a_core": round(cpu, 3),
        "requests_in_window": {
            "kubernetes": round(kube),
            "vault": round(mine.get("vault", 0.0)),
            "ceph": round(mine.get("ceph", 0.0)),
            "kubernetes_others_per_s": round(others_per_s, 2),
            "kubernetes_by_request": dict(sorted(beyond.items(), key=lambda kv: -kv[1])),
            "kubernetes_other_resources": round(unrelated),
        },
        # the window holds one resync: what one resync costs per credential
        "per_credential_in_window": {
            "kubernetes": round(kube / count, 2),
            "vault": round(mine.get("vault", 0.0) / count, 2),
            "ceph": round(mine.get("ceph", 0.0) / count, 2),
        },
        "per_credential_hour": {
            "kubernetes": rate(kube),
            "vault": rate(mine.get("vault", 0.0)),
            "ceph": rate(mine.get("ceph", 0.0)),
        },
        "restart": restart,
    }
    log("idle: " + json.dumps(result["per_credential_hour"]) + " requests per credential-hour")
    print(table(result), flush=True)
    return result


def table(result: dict[str, Any]) -> str:
    """Issue 16's table, for one run."""
    hour, restart = result["per_credential_hour"], result["restart"]
    rows = [
        ("first sync (every CR promoted)", f"{result['first_sync_s']:.0f} s"),
        (
            "RSS after the sync / idle",
            f"{result['rss_mb_after_sync']:.0f} / {result['rss_mb_idle']:.0f} MB",
        ),
        (
            "idle requests per credential-hour: Kubernetes / Vault / Ceph",
            f"{hour['kubernetes']} / {hour['vault']} / {hour['ceph']}",
        ),
        ("idle CPU", f"{result['idle_cpu_fraction_of_a_core'] * 100:.1f} % of a core"),
        (
            "restart: leader / caught up",
            f"{restart['leader_after_s']} / {restart['caught_up_s']} s",
        ),
        (
            "restart: rotations, queued, Ceph and Vault requests until caught up",
            f"{restart['promoted']:.0f}, {restart['queued_by_sweep']:.0f}, "
            f"{restart['ceph_requests']:.0f}, {restart['vault_requests']:.0f}",
        ),
        ("restart: RSS once caught up", f"{restart['rss_mb']:.0f} MB"),
        (
            "Vault per credential-hour with the audit push (safety poll)",
            f"{restart['vault_per_credential_hour_with_push']}",
        ),
    ]
    return tabulate(rows, headers=[f"{result['credentials']:,} credentials", ""])
