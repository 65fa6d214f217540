"""``vaultbridge demo``: the embedded default environment and a few live rotations.

Starts real OpenBao, Ceph mon(s) and a Kubernetes API on loopback (``vaultbridge.testenv``),
creates a few CredentialRotations and rotates them while printing every step as it happens
(``scenes``): a Keystone user+password pair for RGW (mon config database, all-or-nothing, the
Secret also owned by a CephObjectStore), a generated dashboard secret (config-key store), a
cephx key rotated without downtime (a new entity per version), the rook/rook#15460 case (a
user's own Secret adopted as the source), then ``vaultbridge run`` in the background
(``controller``): a Vault write plus a webhook promoted live, a hand edit picked up by the
Secret watch. Last, a failure that rolls back, and a CR deleted without losing the user's
Secret. Secret values are never printed.
"""

from __future__ import annotations

import json
import sys
import time

import click

from vaultbridge.model.spec import CredentialRef
from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.env import start


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
    from vaultbridge.demo.scenes import Demo

    try:
        return Demo(env, Printer()).run()
    finally:
        if keep:
            click.echo(
                f"\nleft running; data in {env.workdir}; stop the pids in "
                f"{json.dumps({'vault': env.vault.pid, **env.kube.pids})} and the mons"
            )
        else:
            env.stop()
            click.echo("\nenvironment stopped and removed")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
