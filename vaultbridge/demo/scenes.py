"""The demo's scenes, in the order they run; each prints what it does and what came of it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import click
from tabulate import tabulate

import vaultbridge.app as application
from vaultbridge.demo import Printer, heading
from vaultbridge.demo.controller import BackgroundController
from vaultbridge.demo.kube import NAMESPACE, DemoKube, random_value, vault_writer
from vaultbridge.engine.outcome import Outcome
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.logging import configure_logging
from vaultbridge.settings import load_settings
from vaultbridge.testenv.env import Environment

CR = ("vaultbridge.io/v1alpha1", "credentialrotations", "CredentialRotation")
KEYSTONE = CredentialRef(NAMESPACE, "rgw-keystone")
DASHBOARD = CredentialRef(NAMESPACE, "dashboard")
APP_KEY = CredentialRef(NAMESPACE, "app-cephx")
LDAP = CredentialRef(NAMESPACE, "rgw-ldap")
KEYSTONE_OPTIONS = [
    {"who": "client.rgw.my-store", "option": "rgw_keystone_admin_user", "field": "user"},
    {"who": "client.rgw.my-store", "option": "rgw_keystone_admin_password", "field": "password"},
]


class Demo:
    """The scenes, against one environment; ``run`` returns the exit code."""

    def __init__(self, env: Environment, printer: Printer) -> None:
        for key, value in env.variables().items():
            if key.startswith("VAULTBRIDGE_"):
                os.environ[key] = value
        self.env = env
        self.printer = printer
        configure_logging("WARNING")
        self.app = application.build(load_settings(), observer=printer)
        self.kube = DemoKube(env)
        self.vault = vault_writer(env)
        self.failures = 0

    def run(self) -> int:
        self.kube.namespace(NAMESPACE)
        self.kube.create("ceph.rook.io/v1", "cephobjectstores", "CephObjectStore", "my-store", {})
        try:
            self.keystone()
            self.dashboard()
            self.cephx()
            self.secret_as_source()
            self.controller()
            self.bad_spec()
            self.deletion()
            self.status()
        finally:
            self.app.close()
        heading("What the demo showed")
        click.echo(
            "  every value was applied to Ceph, read back exactly, and only then written to the\n"
            "  Secret and the Vault staging labels; the failure left Ceph, the Secret and Vault\n"
            "  at the last verified version; the controller did the same on its own, from a\n"
            "  webhook and from a watch; and deleting a CR left the user's own Secret in place."
        )
        return 1 if self.failures else 0

    # -- helpers -----------------------------------------------------------------------------

    def step(self, title: str, action: Callable[[], Outcome], expect: str | None = None) -> Outcome:
        """Run and show one rotation; it fails the demo unless ok (or ``expect``)."""
        heading(title)
        self.printer.reset()
        outcome = action()
        total = (time.perf_counter() - self.printer.started) * 1000
        ok = outcome.result == expect if expect else outcome.ok
        mark = (
            click.style("OK", fg="green")
            if outcome.ok
            else click.style(outcome.result.upper(), fg="red")
        )
        click.echo(f"  {mark} {outcome.message} [{total:.0f} ms]")
        if not ok:
            self.failures += 1
        return outcome

    def check(self, passed: bool, what: str) -> None:
        mark = click.style("OK", fg="green") if passed else click.style("FAILED", fg="red")
        click.echo(f"  {mark} {what}")
        if not passed:
            self.failures += 1

    def create(self, ref: CredentialRef, spec: dict[str, Any]) -> None:
        self.kube.create(*CR, ref.name, spec)

    def current_version(self, ref: CredentialRef) -> int | None:
        status = self.kube.get(*CR[:2], ref.name).get("status") or {}
        return None if status.get("rotation") else status.get("currentVersion")

    def wait_version(self, ref: CredentialRef, version: int, timeout: float = 30.0) -> float | None:
        """Seconds until ``ref`` is promoted at ``version`` (None: not within ``timeout``)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.current_version(ref) == version:
                return time.perf_counter() - started
            time.sleep(0.01)
        return None

    # -- scenes ------------------------------------------------------------------------------

    def keystone(self) -> None:
        self.vault("ceph/rgw-keystone", {"user": "rgw-admin", "password": random_value()})
        owner = {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "name": "my-store"}
        self.create(
            KEYSTONE,
            {
                "source": {"mount": "secret", "path": "ceph/rgw-keystone"},
                "secret": {"name": "rgw-keystone", "extraOwners": [owner]},
                "target": {"config": KEYSTONE_OPTIONS},
                "maxAge": "720h",
            },
        )
        click.echo(
            "\nCredentialRotation rook-ceph/rgw-keystone: Vault secret/ceph/rgw-keystone "
            "(user, password) -> mon config db client.rgw.my-store, all-or-nothing"
        )
        plan = self.app.engine.sync(KEYSTONE, dry_run=True)
        heading("Precheck (vaultbridge sync --dry-run): nothing is changed")
        for number, line in enumerate(plan.plan, 1):
            click.echo(f"  {number}. {line}")
        self.step(
            "First sync: Vault version 1 -> Ceph -> verify -> Secret",
            lambda: self.app.engine.sync(KEYSTONE),
        )
        self.vault("ceph/rgw-keystone", {"user": "rgw-admin", "password": random_value()})
        self.step(
            "Rotated in Vault (version 2): propagate and verify before promoting",
            lambda: self.app.engine.sync(KEYSTONE),
        )

    def dashboard(self) -> None:
        self.create(
            DASHBOARD,
            {
                "source": {"mount": "secret", "path": "ceph/dashboard"},
                "secret": {"name": "dashboard"},
                "target": {"configKey": {"key": "mgr/dashboard/demo_secret"}},
                "generate": True,
                "schedule": "0 3 * * 0",
            },
        )
        for n in (1, 2):
            self.step(
                f"Compliance rotation #{n} of config-key mgr/dashboard/demo_secret "
                "(vaultbridge generates the value into Vault)",
                lambda: self.app.engine.rotate(DASHBOARD),
            )

    def cephx(self) -> None:
        self.create(
            APP_KEY,
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
            self.step(
                f"cephx rotation #{n} of client.demo-app (alternate strategy: a new entity "
                "client.demo-app.<version>, verified with a fresh connection before promotion)",
                lambda: self.app.engine.rotate(APP_KEY),
            )

    def secret_as_source(self) -> None:
        # the user's own Secret, as Rook's CephObjectStore reads it: vaultbridge adopts it
        self.kube.secret("rgw-ldap", {"value": "first-ldap-secret"})
        self.create(
            LDAP,
            {
                "secret": {"name": "rgw-ldap", "adopt": True},
                "target": {"config": {"who": "client.rgw.my-store", "option": "rgw_ldap_secret"}},
            },
        )
        self.step(
            "rook/rook#15460: the user's Secret is the source (adopted); its content reaches "
            "the mon db",
            lambda: self.app.engine.sync(LDAP),
        )
        self.kube.secret("rgw-ldap", {"value": "edited-ldap-secret"})
        self.step(
            "Someone edits the Secret: the edit is applied and verified",
            lambda: self.app.engine.sync(LDAP),
        )

    def controller(self) -> None:
        heading("The controller: `vaultbridge run` starts in the background")
        controller = BackgroundController(self.env)
        try:
            seconds = controller.wait_leading() + controller.wait_listed(str(KEYSTONE))
            controller.wait_idle()  # its first pass over every CR: all are in sync already
            click.echo(f"  it leads after {seconds:.1f} s, and watches the CRs and their Secrets")
            version = self.vault(
                "ceph/rgw-keystone", {"user": "rgw-admin", "password": random_value()}
            )
            heading(
                f"Vault gets version {version}; a webhook tells the controller (POST /v1/trigger)"
            )
            self.printer.reset()
            code, body = controller.trigger({"mount": "secret", "path": "ceph/rgw-keystone"})
            took = self.wait_version(KEYSTONE, version)
            self.check(
                code == 202 and took is not None,
                f"rook-ceph/rgw-keystone: version {version} promoted by the controller "
                f"{_ms(took)} after the webhook"
                + ("" if code == 202 else f" (the webhook answered {code}: {body})"),
            )
            self._show_log(controller)
            heading("Someone edits the adopted Secret by hand: the Secret watch notices")
            before = self.current_version(LDAP) or 0
            self.kube.secret("rgw-ldap", {"value": "edited-again-ldap-secret"})
            took = self.wait_version(LDAP, before + 1)
            self.check(
                took is not None,
                f"rook-ceph/rgw-ldap: the edit reached the mon db as version {before + 1}, "
                f"{_ms(took)} after it was saved",
            )
            self._show_log(controller)
        finally:
            controller.stop()
            click.echo("  the controller is stopped; the scenes below use the CLI's engine again")

    def _show_log(self, controller: BackgroundController) -> None:
        for line in controller.new_log_lines(lambda text: " promoted " in text):
            click.echo(f"    controller log: {line}")

    def bad_spec(self) -> None:
        obj = self.kube.get(*CR[:2], KEYSTONE.name)
        bad = {"who": "client.rgw.my-store", "option": "rgw_keystone_no_such_option"}
        obj["spec"]["target"]["config"].append({**bad, "field": "user"})
        self.kube.replace(*CR[:2], KEYSTONE.name, obj)
        self.vault("ceph/rgw-keystone", {"user": "rgw-admin", "password": random_value()})
        outcome = self.step(
            "A bad spec (an option Ceph does not know): rolled back, nothing changes",
            lambda: self.app.engine.sync(KEYSTONE),
            expect="rolled-back",
        )
        delay = outcome.retry_after.total_seconds() if outcome.retry_after else 0
        click.echo(
            f"  reason: {outcome.reason}; next try in {delay:.0f} s (capped exponential backoff)"
        )

    def deletion(self) -> None:
        heading("The rgw-ldap CredentialRotation is deleted: the user's Secret stays")
        self.kube.delete(*CR[:2], LDAP.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.kube.get(*CR[:2], LDAP.name)
            except click.ClickException:
                break
            time.sleep(0.1)
        time.sleep(2)  # the garbage collector's turn: it would have taken an owned Secret now
        metadata = self.kube.secret_metadata("rgw-ldap")
        owners = [] if metadata is None else metadata.get("ownerReferences") or []
        self.check(
            metadata is not None and not owners,
            "Secret rook-ceph/rgw-ldap is still there, with its data and no ownerReference "
            "(deletionPolicy Retain: an adopted or source Secret is never deleted)",
        )

    def status(self) -> None:
        heading("vaultbridge status")
        rows = self.app.status_rows(None)
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
                headers=[
                    "CREDENTIAL",
                    "TARGET",
                    "CURRENT",
                    "PREVIOUS",
                    "PHASE",
                    "READY",
                    "COMPLIANT",
                ],
            )
        )


def _ms(seconds: float | None) -> str:
    return "(not within 30 s)" if seconds is None else f"{seconds * 1000:.0f} ms"
