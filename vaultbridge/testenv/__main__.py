"""``python -m vaultbridge.testenv up|down|status``: what testenv/up and testenv/down run."""

from __future__ import annotations

import sys

import click

from vaultbridge.testenv import env as testenv
from vaultbridge.testenv.common import TestenvError


@click.group()
def main() -> None:
    """Real OpenBao, Ceph mons and Kubernetes API on loopback for tests and the demo."""


@main.command()
@click.option(
    "--mons",
    default=1,
    show_default=True,
    type=click.IntRange(1, 5),
    help="Number of Ceph monitors (3 for quorum tests).",
)
@click.option(
    "--ceph",
    "release",
    default="16",
    show_default=True,
    type=click.Choice(["16", "18", "20"]),
    help="Ceph release of the mons: 16 Pacific (the machine's packages), 18 Reef or 20 "
    "Tentacle (a Debian root filesystem, built once into ~/.cache/vaultbridge/rootfs).",
)
@click.option(
    "--node",
    is_flag=True,
    help="Also run a real node: containerd + runc, kubelet and kube-scheduler, with the "
    "images of `make image` imported (built first when missing). Pods use the host network.",
)
def up(mons: int, release: str, node: bool) -> None:
    """Start everything and write .testenv/env.sh (source it to use the servers)."""
    try:
        env = testenv.up(mons=mons, ceph=int(release), node=node)
    except TestenvError as exc:
        click.echo(f"testenv/up: {exc}", err=True)
        sys.exit(1)
    click.echo(f"OpenBao     {env.vault.addr}  (pid {env.vault.pid})")
    click.echo(f"Ceph {env.ceph.release}     {len(env.ceph.mon_ids)} mon(s), conf {env.ceph.conf}")
    click.echo(f"Kubernetes  {env.kube.server}  kubeconfig {env.kube.kubeconfig}")
    if env.node is not None:
        click.echo(
            f"Node        {env.node.name}: Ready, images {', '.join(env.node.images.values())}"
        )
    click.echo(f"ready in {env.started_seconds:.1f} s; now: . {testenv.default_state_dir()}/env.sh")


@main.command()
def down() -> None:
    """Stop everything testenv/up started (by pid) and remove its data."""
    if testenv.down():
        click.echo("testenv/down: stopped and removed")
    else:
        click.echo("testenv/down: nothing was running")


@main.command()
def status() -> None:
    """Say whether an environment from testenv/up is running."""
    env = testenv.load()
    if env is None:
        click.echo("no test environment (run testenv/up)")
        sys.exit(1)
    click.echo(f"{'healthy' if env.healthy() else 'DEAD'}: data in {env.workdir}")
    sys.exit(0 if env.healthy() else 1)


if __name__ == "__main__":
    main()
