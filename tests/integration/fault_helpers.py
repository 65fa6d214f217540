"""The wire-fault suite's plumbing: fault proxies in front of the three real servers, an app
wired through them, the four target kinds, a liveness probe that bypasses the proxies, and the
agreement check run once a fault has cleared.

The mon of the suite's own cluster binds one port and advertises another (``--public-bind-addr``,
as Rook runs mons behind a Service); the proxy listens on the advertised one, so every client
that follows the monmap goes through it. The probe and the checks read Vault and the API server
directly. The mon they can only reach through its proxy (a msgr2 client refuses a mon that
answers from an address other than the one it dialled): while a fault is on the mon, nobody can
change what Ceph holds, so a probe that cannot reach it counts the tick as unknown, not dead.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cephx_helpers import authenticates
from kubernetes import client as k8s
from rotation_helpers import (
    create_cr,
    get_cr,
    read_secret,
    unique,
    vault,
    vault_labels,
    vault_put,
)

import vaultbridge.app as application
from vaultbridge.ceph import CephConnection, CephError
from vaultbridge.engine import faults
from vaultbridge.kube.client import KubeClient
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef
from vaultbridge.settings import load_settings
from vaultbridge.testenv.ceph import CephCluster, start_ceph
from vaultbridge.testenv.common import free_port
from vaultbridge.testenv.env import Environment
from vaultbridge.testenv.faultproxy import FAULTS, FaultProxy

BACKENDS = ("vault", "kubernetes", "ceph")
TARGETS = ("config", "config-key", "cephx-alternate", "cephx-in-place")
STEPS = ("Snapshot", "Apply", "Verify", "Promote", "after:Promote")
TIMEOUT = 2.0  # every client's request timeout under test: a black hole costs this much
PROBE = 5.0  # the probe's and the checks' own timeout: a busy machine is not a dead credential
HOLD = {"latency": 3.0, "reset": 2.0, "blackhole": 3.0, "cut": 2.0}  # seconds a fault lasts
LATENCY = 0.3  # seconds added to every chunk under "latency"
SETTLE = 120.0  # seconds a case may take to settle once the fault is on
LATER = 30.0  # a retry asked for further out than this is scheduled work, not recovery


@dataclass
class Wired:
    """Proxies in front of OpenBao, the API server and the suite's own mon."""

    env: Environment
    cluster: CephCluster
    proxies: dict[str, FaultProxy]
    kubeconfig: Path

    def variables(self) -> dict[str, str]:
        """The settings that send vaultbridge through the proxies."""
        return {
            **{k: v for k, v in self.env.variables().items() if k.startswith("VAULTBRIDGE_")},
            "VAULTBRIDGE_VAULT__ADDR": f"http://{self.proxies['vault'].address}",
            "VAULTBRIDGE_VAULT__TIMEOUT": str(TIMEOUT),
            "VAULTBRIDGE_KUBE__KUBECONFIG": str(self.kubeconfig),
            "VAULTBRIDGE_CEPH__CONF": str(self.cluster.conf),
            "VAULTBRIDGE_CEPH__KEYRING": str(self.cluster.admin_keyring),
            "VAULTBRIDGE_CEPH__USER": self.cluster.user,
            "VAULTBRIDGE_CEPH__TIMEOUT": str(TIMEOUT),
        }

    def admin(self) -> CephConnection:
        return CephConnection(
            str(self.cluster.conf), self.cluster.user, str(self.cluster.admin_keyring), PROBE
        )

    def authenticates(self, entity: str, key: str) -> bool:
        return authenticates(str(self.cluster.conf), entity, key, PROBE)

    def clear(self) -> None:
        for proxy in self.proxies.values():
            proxy.clear()

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.cluster.stop()


def start_wired(env: Environment, workdir: Path) -> Wired:
    advertised, bound = (free_port(), free_port()), (free_port(), free_port())
    proxies = {
        "ceph": FaultProxy(("127.0.0.1", bound[0]), port=advertised[0], name="mon.a"),
        "vault": FaultProxy(("127.0.0.1", env.vault.port), name="openbao"),
        "kubernetes": FaultProxy(
            ("127.0.0.1", int(env.kube.server.rsplit(":", 1)[1])), name="kube-apiserver"
        ),
    }
    try:
        cluster = start_ceph(workdir / "ceph", 1, ports=[advertised], bind_ports=[bound])
    except BaseException:
        for proxy in proxies.values():
            proxy.stop()
        raise
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        env.kube.kubeconfig.read_text().replace(
            env.kube.server, f"https://{proxies['kubernetes'].address}"
        )
    )
    return Wired(env, cluster, proxies, kubeconfig)


@contextmanager
def wired_app(wired: Wired) -> Iterator[application.App]:
    saved = {key: os.environ.get(key) for key in wired.variables()}
    os.environ.update(wired.variables())
    try:
        settings = load_settings()
        kube = KubeClient.from_settings(settings.kube.kubeconfig, timeout=TIMEOUT)
        app = application.build(settings, kube=kube)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield app
    finally:
        app.close()


# -- targets -----------------------------------------------------------------------------------


@dataclass
class Target:
    """One CR of a target kind, and how to read what Ceph and its consumers see."""

    kind: str
    wired: Wired
    api: k8s.ApiClient
    ns: str
    path: str = field(default_factory=lambda: unique("ceph/fault"))
    base: str = field(default_factory=lambda: f"client.{unique('fault')}")

    @property
    def cephx(self) -> bool:
        return self.kind.startswith("cephx")

    def spec(self) -> dict[str, Any]:
        source = {"mount": "secret", "path": self.path, "field": "key" if self.cephx else "value"}
        secret = {"name": "cred"}
        if self.kind == "config":
            target = {"config": {"who": self.base, "option": "rgw_keystone_admin_password"}}
        elif self.kind == "config-key":
            target = {"configKey": {"key": f"vaultbridge/{self.base}"}}
        else:
            strategy = "in-place" if self.kind == "cephx-in-place" else "alternate"
            target = {
                "cephx": {
                    "entity": self.base,
                    "caps": {"mon": "allow r"},
                    "strategy": strategy,
                    "retireAfter": "1h",
                }
            }
        spec: dict[str, Any] = {"source": source, "secret": secret, "target": target}
        if self.cephx:
            spec["generate"] = True
        else:
            secret["key"] = "value"
        return spec

    def create(self) -> None:
        create_cr(self.api, self.ns, "cred", self.spec())

    def rotate(self, app: application.App, ref: CredentialRef) -> Any:
        """Start a rotation to a new version (generated, or written to Vault) and run it."""
        if self.cephx:
            return app.engine.rotate(ref)
        vault_put(self.wired.env, self.path, {"value": unique("value")})
        return app.engine.sync(ref)

    def vault_version(self) -> tuple[int, str]:
        """Vault's latest version of the source and its value (read past the proxy)."""
        read = vault(self.wired.env).secrets.kv.v2.read_secret_version(
            path=self.path, mount_point="secret", raise_on_deleted_version=False
        )
        field_name = "key" if self.cephx else "value"
        return int(read["data"]["metadata"]["version"]), str(read["data"]["data"][field_name])

    def secret(self) -> dict[str, str]:
        secret = read_secret(self.api, self.ns, "cred")
        if secret is None or not secret.data:
            return {}
        data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        data["@version"] = (secret.metadata.annotations or {}).get(
            "vaultbridge.io/vault-version", ""
        )
        return data

    def ceph_value(self, admin: CephConnection) -> str | None:
        """config / config-key: the value Ceph holds now (None: none)."""
        if self.kind == "config":
            rows = json.loads(admin.mon_command({"prefix": "config dump"}) or b"[]")
            for row in rows:
                if row.get("section") == self.base and row.get("name") == (
                    "rgw_keystone_admin_password"
                ):
                    return str(row.get("value"))
            return None
        try:
            return admin.mon_command(
                {"prefix": "config-key get", "key": f"vaultbridge/{self.base}"}
            ).decode()
        except CephError:
            return None

    def entity_of(self, version: int) -> str:
        return f"{self.base}.{version}" if self.kind == "cephx-alternate" else self.base

    def live(self, admin: CephConnection, candidates: list[tuple[str, str]]) -> bool:
        """Is one of ``candidates`` ((entity, key) for cephx, (None, value) otherwise) live?"""
        if self.cephx:
            return any(self.wired.authenticates(entity, key) for entity, key in candidates)
        held = self.ceph_value(admin)
        return any(value == held for _, value in candidates)

    def problems(self, admin: CephConnection) -> list[str]:
        """Where Ceph, the Secret, the Vault labels and the CR status disagree (none: [])."""
        out: list[str] = []
        status = get_cr(self.api, self.ns, "cred").get("status") or {}
        version, value = self.vault_version()
        current = status.get("currentVersion")
        if status.get("rotation") is not None:
            out.append(f"a rotation is still in flight: {status['rotation'].get('step')}")
        if current != version:
            out.append(f"status currentVersion {current}, Vault's latest {version}")
        secret = self.secret()
        if secret.get("@version") != str(current):
            out.append(f"Secret holds version {secret.get('@version')!r}, status {current}")
        labels = vault_labels(self.wired.env, self.path)
        if labels.get("vaultbridge-current") != str(current):
            out.append(f"Vault label current={labels.get('vaultbridge-current')}, status {current}")
        if self.cephx:
            entity = self.entity_of(version)
            if self.kind == "cephx-alternate" and status.get("currentEntity") != entity:
                out.append(f"status entity {status.get('currentEntity')}, expected {entity}")
            if secret.get("userKey") != value:
                out.append("the Secret's key is not Vault's latest")
            if f"client.{secret.get('userID')}" != entity:
                out.append(f"the Secret names {secret.get('userID')}, expected {entity}")
            elif not self.wired.authenticates(entity, secret.get("userKey", "")):
                out.append(f"the Secret's key does not authenticate as {entity}")
        else:
            if secret.get("value") != value:
                out.append("the Secret's value is not Vault's latest")
            if self.ceph_value(admin) != value:
                out.append("Ceph's value is not Vault's latest")
        history = status.get("history") or []
        if (
            not history
            or history[0].get("result") != "Promoted"
            or history[0].get("version") != current
        ):
            out.append(f"history does not end with the promotion of {current}")
        return out


# -- the probe ---------------------------------------------------------------------------------


class Probe:
    """Every ``interval``: is the old or the new credential live (past the proxies), and
    which rotations did the CR's journal show. Its own failures are not the suite's."""

    def __init__(self, target: Target, old: tuple[str, str], interval: float = 0.2) -> None:
        self.target, self.old, self.interval = target, old, interval
        self.ticks = self.dead = self.unknown = self.consumer_failures = 0
        # in-place without pending keys (Pacific): between Apply and Promote the Secret still
        # holds the key Ceph replaced, the documented window (docs/cephx.md)
        self.in_window_failures = 0
        self.rotations: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _candidates(self) -> list[tuple[str, str]]:
        version, value = self.target.vault_version()
        return [self.old, (self.target.entity_of(version), value)]

    def _run(self) -> None:
        admin = self.target.wired.admin()
        try:
            while not self._stop.wait(self.interval):
                self.tick(admin)
        finally:
            admin.close()

    def tick(self, admin: CephConnection) -> None:
        status = get_cr(self.target.api, self.target.ns, "cred").get("status") or {}
        if status.get("rotation"):
            self.rotations.add(str(status["rotation"]["id"]))
        self.ticks += 1
        mon = self.target.wired.proxies["ceph"]
        try:
            # a fresh connection can fail for reasons of its own on a loaded machine (a slow
            # mon, a timeout); "neither live" must hold twice, 0.2 s apart, to count
            neither = not self.target.live(admin, self._candidates())
            if neither:
                time.sleep(0.2)
                neither = not self.target.live(admin, self._candidates())
            if neither:
                if mon.disturbed():
                    self.unknown += 1  # unreachable: the fault itself, not a lost credential
                else:
                    self.dead += 1
            if self.target.cephx:
                secret = self.target.secret()
                entity = f"client.{secret.get('userID')}"
                key = secret.get("userKey", "")
                works = self.target.wired.authenticates(entity, key)
                if not works:  # as above: a failure must repeat to count
                    time.sleep(0.2)
                    works = self.target.wired.authenticates(entity, key)
                # the journal as read before and after the check: a rotation in flight in either
                # read, or one that finished between them, puts the check inside the window
                after = get_cr(self.target.api, self.target.ns, "cred").get("status") or {}
                window = self.target.kind == "cephx-in-place" and (
                    bool(status.get("rotation"))
                    or bool(after.get("rotation"))
                    or len(status.get("history") or []) != len(after.get("history") or [])
                )
                if not works and not mon.disturbed():
                    if window:
                        self.in_window_failures += 1
                    else:
                        self.consumer_failures += 1
        except CephError:
            if mon.disturbed():
                self.unknown += 1
            else:
                self.dead += 1


# -- one case ----------------------------------------------------------------------------------


@dataclass
class CaseResult:
    target: str
    backend: str
    fault: str
    step: str
    struck: bool = False  # the step was reached and the fault switched on
    outcomes: list[str] = field(default_factory=list)
    settled_in: float = 0.0
    problems: list[str] = field(default_factory=list)
    dead_ticks: int = 0
    unknown_ticks: int = 0
    ticks: int = 0
    consumer_failures: int = 0
    in_window_failures: int = 0
    unrecorded: list[str] = field(default_factory=list)  # rotations the history lacks
    history: list[str] = field(default_factory=list)
    proxy_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def arm(
    wired: Wired, backend: str, fault: str, step: str
) -> tuple[Callable[[str, str], None], threading.Event]:
    """A fault hook that switches ``fault`` on ``backend`` at ``step`` (once), and clears it
    ``HOLD[fault]`` seconds later; the event is set once it struck."""
    phase, _, action = step.rpartition(":")
    phase = phase or "before"
    struck = threading.Event()
    proxy = wired.proxies[backend]

    def hook(when: str, what: str) -> None:
        if struck.is_set() or when != phase or what != action:
            return
        struck.set()
        if fault == "latency":
            proxy.set(fault, delay=LATENCY)
        else:
            proxy.set(fault)
        threading.Timer(HOLD[fault], proxy.clear).start()

    return hook, struck


def run_case(
    wired: Wired, api: k8s.ApiClient, ns: str, case: tuple[str, str, str, str]
) -> CaseResult:
    kind, backend, fault, step = case
    assert fault in FAULTS and backend in BACKENDS
    result = CaseResult(kind, backend, fault, step)
    target = Target(kind, wired, api, ns)
    ref = CredentialRef(ns, "cred")
    if not target.cephx:
        vault_put(wired.env, target.path, {"value": unique("value")})
    target.create()
    with wired_app(wired) as app:
        first = target.rotate(app, ref) if target.cephx else app.engine.sync(ref)
        assert first.result == "promoted", first.message
        version, value = target.vault_version()
        old = (target.entity_of(version), value)
        hook, struck = arm(wired, backend, fault, step)
        began = time.monotonic()
        with Probe(target, old) as probe:
            faults.add_hook(hook)
            try:
                # the controller's part: call again only when the outcome asks for it (a
                # retry, an error its workers back off from), with the delays scaled down
                outcome, again = _attempt(lambda: target.rotate(app, ref))
                result.outcomes.append(outcome)
                while time.monotonic() - began < SETTLE and (
                    again is not None or wired.proxies[backend].fault is not None
                ):
                    time.sleep(min(again or 0.5, 1.0))
                    if again is None:
                        continue  # nothing asked for: wait out the fault, then judge
                    outcome, again = _attempt(lambda: app.engine.reconcile(ref))
                    if outcome != result.outcomes[-1]:
                        result.outcomes.append(outcome)
            finally:
                faults.remove_hook(hook)
                wired.clear()
            last = wired.admin()
            try:
                probe.tick(last)
            finally:
                last.close()
        result.settled_in = round(time.monotonic() - began, 1)
        result.struck = struck.is_set()
        result.ticks, result.dead_ticks = probe.ticks, probe.dead
        result.unknown_ticks = probe.unknown
        result.consumer_failures = probe.consumer_failures
        result.in_window_failures = probe.in_window_failures
        admin = wired.admin()
        try:
            result.problems = target.problems(admin)
        finally:
            admin.close()
        status = get_cr(api, ns, "cred").get("status") or {}
        recorded = {h.get("rotationId") for h in status.get("history") or []}
        result.unrecorded = sorted(probe.rotations - recorded)
        result.history = [
            f"{h.get('version')}:{h.get('result')}" for h in status.get("history") or []
        ]
        result.proxy_counts = dict(wired.proxies[backend].counts)
    return result


def _attempt(call: Callable[[], Any]) -> tuple[str, float | None]:
    """One engine call as the controller's workers make it, and when they would call again
    (None: not until something else queues the credential)."""
    try:
        outcome = call()
    except (BackendError, PreconditionError) as exc:
        return f"error:{type(exc).__name__}", 1.0  # the workers' backoff
    retry = outcome.retry_after.total_seconds() if outcome.retry_after is not None else None
    if retry is None and outcome.result == "in-flight":
        retry = 1.0
    if retry is not None and retry > LATER:
        retry = None  # a retirement due in an hour: not this case's business
    return str(outcome.result), retry


def report(result: CaseResult) -> None:
    """Append ``result`` to ``$VAULTBRIDGE_CHAOS_REPORT`` (make chaos prints the table)."""
    report_line({"suite": "wire", **json.loads(result.to_json())})


def report_line(line: dict[str, Any]) -> None:
    path = os.environ.get("VAULTBRIDGE_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")
