"""``vaultbridge demo``: the embedded default environment and a few live rotations.

Starts real OpenBao, Ceph mon(s) and a Kubernetes API on loopback (``vaultbridge.testenv``),
creates a few CredentialRotations and rotates them while printing every step as it happens:
a Keystone user+password pair for RGW (mon config database, all-or-nothing, the Secret also owned
by a CephObjectStore), a generated dashboard secret (config-key store), a cephx key rotated
without downtime (a new entity per version), the rook/rook#15460 case
(an edited Secret reaching the mon database), and a failure that rolls back. Secret values are
never printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from tabulate import tabulate

import vaultbridge.app as application
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.logging import configure_logging
from vaultbridge.settings import load_settings
from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.env import Environment, start

NAMESPACE = "rook-ceph"


class Printer:
    """Prints engine steps live, with the time since the rotation started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def reset(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, ref: CredentialRef, what: str, detail: str) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        if what.startswith("run:"):
            click.echo(f"    {elapsed:7.1f} ms  {click.style(what[4:], fg='cyan'):<20} {detail}")
        else:
            colour = "red" if what in ("RolledBack", "RotationFailed") else "green"
            click.echo(f"    {elapsed:7.1f} ms  {click.style(what, fg=colour):<20} {detail}")


def heading(text: str) -> None:
    click.echo()
    click.echo(click.style(f"== {text}", bold=True))


def run_demo(*, mons: int = 1, keep: bool = False) -> int:
    heading(f"Starting OpenBao, {mons} Ceph mon(s) and a Kubernetes API server on loopback")
    try:
        env = start(mons=mons)
    except TestenvError as exc:
        click.echo(f"vaultbridge demo: {exc}", err=True)
        return 1
    click.echo(f"  OpenBao     {env.vault.addr}")
    click.echo(f"  Ceph        {len(env.ceph.mon_ids)} mon(s), {env.ceph.conf}")
    click.echo(f"  Kubernetes  {env.kube.server}")
    click.echo(f"  ready in {env.started_seconds:.1f} s")
    try:
        return _scenarios(env)
    finally:
        if keep:
            click.echo(
                f"\nleft running; data in {env.workdir}; stop the pids in "
                f"{json.dumps({'vault': env.vault.pid, **env.kube.pids})} and the mons"
            )
        else:
            env.stop()
            click.echo("\nenvironment stopped and removed")


def _scenarios(env: Environment) -> int:
    for key, value in env.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            os.environ[key] = value
    printer = Printer()
    configure_logging("WARNING")
    app = application.build(load_settings(), observer=printer)
    kube = _Kube(env)
    kube.namespace(NAMESPACE)
    kube.create("ceph.rook.io/v1", "cephobjectstores", "CephObjectStore", "my-store", {})
    vault = _vault(env)
    failures = 0

    def step(title: str, action: Callable[[], Any], expect: str | None = None) -> Any:
        """Run and show one scenario; it fails unless ok (or, with ``expect``, that result)."""
        nonlocal failures
        heading(title)
        printer.reset()
        outcome = action()
        total = (time.perf_counter() - printer.started) * 1000
        mark = (
            click.style("OK", fg="green")
            if outcome.ok
            else click.style(outcome.result.upper(), fg="red")
        )
        click.echo(f"  {mark} {outcome.message} [{total:.0f} ms]")
        passed = outcome.result == expect if expect else outcome.ok
        if not passed:
            failures += 1
        return outcome

    keystone = CredentialRef(NAMESPACE, "rgw-keystone")
    vault("ceph/rgw-keystone", {"user": "rgw-admin", "password": _random()})
    kube.create(
        "vaultbridge.io/v1alpha1",
        "credentialrotations",
        "CredentialRotation",
        keystone.name,
        {
            "source": {"mount": "secret", "path": "ceph/rgw-keystone"},
            "secret": {
                "name": "rgw-keystone",
                "extraOwners": [
                    {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "name": "my-store"}
                ],
            },
            "target": {
                "config": [
                    {
                        "who": "client.rgw.my-store",
                        "option": "rgw_keystone_admin_user",
                        "field": "user",
                    },
                    {
                        "who": "client.rgw.my-store",
                        "option": "rgw_keystone_admin_password",
                        "field": "password",
                    },
                ]
            },
            "maxAge": "720h",
        },
    )
    click.echo(
        "\nCredentialRotation rook-ceph/rgw-keystone: Vault secret/ceph/rgw-keystone "
        "(user, password) -> mon config db client.rgw.my-store, all-or-nothing"
    )
    plan = app.engine.sync(keystone, dry_run=True)
    heading("Precheck (vaultbridge sync --dry-run): nothing is changed")
    for number, line in enumerate(plan.plan, 1):
        click.echo(f"  {number}. {line}")
    step(
        "First sync: Vault version 1 -> Ceph -> verify -> Secret", lambda: app.engine.sync(keystone)
    )
    vault("ceph/rgw-keystone", {"user": "rgw-admin", "password": _random()})
    step(
        "Rotated in Vault (version 2): propagate and verify before promoting",
        lambda: app.engine.sync(keystone),
    )

    dashboard = CredentialRef(NAMESPACE, "dashboard")
    kube.create(
        "vaultbridge.io/v1alpha1",
        "credentialrotations",
        "CredentialRotation",
        dashboard.name,
        {
            "source": {"mount": "secret", "path": "ceph/dashboard"},
            "secret": {"name": "dashboard"},
            "target": {"configKey": {"key": "mgr/dashboard/demo_secret"}},
            "generate": True,
            "schedule": "0 3 * * 0",
        },
    )
    for n in (1, 2):
        step(
            f"Compliance rotation #{n} of config-key mgr/dashboard/demo_secret "
            "(vaultbridge generates the value into Vault)",
            lambda: app.engine.rotate(dashboard),
        )

    app_key = CredentialRef(NAMESPACE, "app-cephx")
    kube.create(
        "vaultbridge.io/v1alpha1",
        "credentialrotations",
        "CredentialRotation",
        app_key.name,
        {
            "source": {"mount": "secret", "path": "ceph/app-cephx"},
            "secret": {"name": "app-cephx"},
            "target": {
                "cephx": {
                    "entity": "client.demo-app",
                    "caps": {"mon": "allow r"},
                    "retireAfter": "10m",
                }
            },
        },
    )
    for n in (1, 2):
        step(
            f"cephx rotation #{n} of client.demo-app (alternate strategy: a new entity "
            "client.demo-app.<version>, verified with a fresh connection before promotion)",
            lambda: app.engine.rotate(app_key),
        )

    rook = CredentialRef(NAMESPACE, "rgw-ldap")
    kube.create(
        "vaultbridge.io/v1alpha1",
        "credentialrotations",
        "CredentialRotation",
        rook.name,
        {
            "secret": {"name": "rgw-ldap"},
            "target": {"config": {"who": "client.rgw.my-store", "option": "rgw_ldap_secret"}},
        },
    )
    uid = kube.get("vaultbridge.io/v1alpha1", "credentialrotations", rook.name)["metadata"]["uid"]
    kube.secret("rgw-ldap", {"value": "first-ldap-secret"}, owner_uid=uid)
    step(
        "rook/rook#15460: the Secret is the source; its content reaches the mon db",
        lambda: app.engine.sync(rook),
    )
    kube.secret("rgw-ldap", {"value": "edited-ldap-secret"}, owner_uid=uid)
    step(
        "Someone edits the Secret: the edit is applied and verified", lambda: app.engine.sync(rook)
    )

    obj = kube.get("vaultbridge.io/v1alpha1", "credentialrotations", keystone.name)
    obj["spec"]["target"]["config"].append(
        {"who": "client.rgw.my-store", "option": "rgw_keystone_no_such_option", "field": "user"}
    )
    kube.replace("vaultbridge.io/v1alpha1", "credentialrotations", keystone.name, obj)
    vault("ceph/rgw-keystone", {"user": "rgw-admin", "password": _random()})
    outcome = step(
        "A bad spec (an option Ceph does not know): rolled back, nothing changes",
        lambda: app.engine.sync(keystone),
        expect="rolled-back",
    )
    click.echo(
        f"  reason: {outcome.reason}; next try in "
        f"{outcome.retry_after.total_seconds() if outcome.retry_after else 0:.0f} s "
        "(capped exponential backoff)"
    )

    heading("vaultbridge status")
    rows = app.status_rows(None)
    click.echo(
        tabulate(
            [
                [
                    r["credential"],
                    r["target"],
                    r["currentVersion"],
                    r["previousVersion"],
                    r["phase"],
                    r["ready"],
                    r["compliant"],
                ]
                for r in rows
            ],
            headers=["CREDENTIAL", "TARGET", "CURRENT", "PREVIOUS", "PHASE", "READY", "COMPLIANT"],
        )
    )
    app.close()
    heading("What the demo showed")
    click.echo(
        "  every value was applied to Ceph, read back exactly, and only then written to the\n"
        "  owner-referenced Secret and the Vault staging labels; the failure left Ceph, the\n"
        "  Secret and Vault at the last verified version. Next: `vaultbridge run` does this\n"
        "  continuously from watches, schedules and Vault triggers."
    )
    return 1 if failures else 0


def _random() -> str:
    return os.urandom(18).hex()


def _vault(env: Environment) -> Callable[[str, dict[str, str]], int]:
    import urllib.request

    def put(path: str, data: dict[str, str]) -> int:
        request = urllib.request.Request(  # noqa: S310 - loopback OpenBao
            f"{env.vault.addr}/v1/secret/data/{path}",
            method="POST",
            data=json.dumps({"data": data}).encode(),
            headers={"X-Vault-Token": env.vault.token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return int(json.loads(resp.read())["data"]["version"])

    return put


class _Kube:
    """Just enough of the Kubernetes API for the demo's set-up (the admin kubeconfig)."""

    def __init__(self, env: Environment) -> None:
        self.cluster = env.kube

    def _check(self, status: int, body: bytes, what: str) -> dict[str, Any]:
        if status >= 300:
            raise click.ClickException(f"{what}: HTTP {status} {body[:200]!r}")
        return dict(json.loads(body))

    def namespace(self, name: str) -> None:
        status, body = self.cluster.request(
            "POST", "/api/v1/namespaces", {"metadata": {"name": name}}
        )
        if status != 409:
            self._check(status, body, f"namespace {name}")

    def _path(self, api_version: str, plural: str) -> str:
        return f"/apis/{api_version}/namespaces/{NAMESPACE}/{plural}"

    def create(
        self, api_version: str, plural: str, kind: str, name: str, spec: dict[str, Any]
    ) -> None:
        body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}
        self._check(
            *self.cluster.request("POST", self._path(api_version, plural), body), f"{kind} {name}"
        )

    def get(self, api_version: str, plural: str, name: str) -> dict[str, Any]:
        return self._check(
            *self.cluster.request("GET", f"{self._path(api_version, plural)}/{name}"), name
        )

    def replace(self, api_version: str, plural: str, name: str, obj: dict[str, Any]) -> None:
        self._check(
            *self.cluster.request("PUT", f"{self._path(api_version, plural)}/{name}", obj), name
        )

    def secret(self, name: str, data: dict[str, str], owner_uid: str) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": "vaultbridge.io/v1alpha1",
                        "kind": "CredentialRotation",
                        "name": name,
                        "uid": owner_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "stringData": data,
        }
        path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
        status, found = self.cluster.request("GET", f"{path}/{name}")
        if status == 200:
            body["metadata"]["resourceVersion"] = json.loads(found)["metadata"]["resourceVersion"]
            self._check(*self.cluster.request("PUT", f"{path}/{name}", body), f"Secret {name}")
        else:
            self._check(*self.cluster.request("POST", path, body), f"Secret {name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
