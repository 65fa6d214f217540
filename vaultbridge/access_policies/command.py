"""``vaultbridge policy render``: read the CRs present and print the policies for them."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click

from vaultbridge.access_policies import (
    ENTITY_RE,
    KINDS,
    VAULT_PART_RE,
    PolicyError,
    PolicyOptions,
    credentials_from,
    render_all,
    render_text,
)
from vaultbridge.model.errors import BackendError
from vaultbridge.settings import SettingsError, load_settings

# -- the command ------------------------------------------------------------------------------


def _vault_ref(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    mount, _, path = text.strip("/").partition("/")
    if not mount or not path or not VAULT_PART_RE.fullmatch(text.strip("/")):
        raise click.BadParameter(f"expected MOUNT/PATH of a KV v2 secret, got {text!r}")
    return mount, path


@click.group("policy")
def policy_group() -> None:
    """Least-privilege policies for Vault, Kubernetes and Ceph, from the CRs present."""


@policy_group.command("render")
@click.option(
    "--kind",
    type=click.Choice([*KINDS, "all"]),
    default="all",
    show_default=True,
    help="vault: HCL policy; kubernetes: Vault Kubernetes auth role (JSON); ceph: cephx caps; "
    "rbac: Helm values scoping the chart's Roles.",
)
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Only CRs in these namespaces (repeat; default: VAULTBRIDGE_KUBE__NAMESPACES, else all).",
)
@click.option("--policy-name", default="vaultbridge", show_default=True)
@click.option("--role", default="vaultbridge", show_default=True, help="Kubernetes auth role.")
@click.option(
    "--service-account",
    default="vaultbridge",
    show_default=True,
    help="The chart's ServiceAccount (the release's full name).",
)
@click.option(
    "--service-account-namespace",
    default="vaultbridge",
    show_default=True,
    help="The namespace vaultbridge is installed in.",
)
@click.option("--audience", default=None, help="Audience the role requires, if any.")
@click.option("--ceph-user", default="client.vaultbridge", show_default=True)
@click.option(
    "--keyring-from",
    default=None,
    metavar="MOUNT/PATH",
    help="KV v2 secret the Vault Agent renders the Ceph keyring from (ceph.keyring.source=agent).",
)
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def render_command(  # noqa: PLR0917 - one parameter per option
    kind: str,
    namespaces: tuple[str, ...],
    policy_name: str,
    role: str,
    service_account: str,
    service_account_namespace: str,
    audience: str | None,
    ceph_user: str,
    keyring_from: str | None,
    output: str,
) -> None:
    """Print the policies vaultbridge needs for the CredentialRotations in the cluster.

    Exits non-zero, naming each CR and its problem, when a CR's target cannot be rendered.
    """
    if not ENTITY_RE.fullmatch(ceph_user):
        raise click.BadParameter(f"{ceph_user!r} is not a client entity", param_hint="--ceph-user")
    options = PolicyOptions(
        policy_name=policy_name,
        role=role,
        service_account=service_account,
        service_account_namespace=service_account_namespace,
        audience=audience,
        ceph_user=ceph_user,
        keyring_source=_vault_ref(keyring_from),
    )
    try:
        objects, plural_of = load_credentials(list(namespaces))
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"vaultbridge: setting {problem}", err=True)
        sys.exit(2)
    except BackendError as exc:
        click.echo(f"vaultbridge: reading CredentialRotations: {exc}", err=True)
        sys.exit(1)
    try:
        credentials = credentials_from(objects, ceph_user)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"vaultbridge: {problem}", err=True)
        click.echo("vaultbridge: no policy rendered", err=True)
        sys.exit(1)
    if not credentials:
        click.echo(
            "vaultbridge: no CredentialRotations found: the policies grant only the basics",
            err=True,
        )
    if output == "json":
        data = render_all(credentials, options, plural_of)
        click.echo(json.dumps(data if kind == "all" else data[kind], indent=2))
    else:
        click.echo(render_text(kind, credentials, options, plural_of), nl=False)


def load_credentials(
    namespaces: list[str],
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The CR objects (and plurals of their extraOwners' kinds) from the Kubernetes API."""
    from vaultbridge.kube import CredentialRotationClient, KubeClient

    settings = load_settings()
    kube = KubeClient.from_settings(settings.kube.kubeconfig)
    try:
        scope = namespaces or settings.kube.namespaces or None
        objects = CredentialRotationClient(kube).list(scope)
        plural_of: dict[str, str] = {}
        for obj in objects:
            owners = ((obj.get("spec") or {}).get("secret") or {}).get("extraOwners") or []
            for owner in owners if isinstance(owners, list) else []:
                if not isinstance(owner, Mapping):
                    continue
                key = f"{owner.get('apiVersion')}/{owner.get('kind')}"
                if key not in plural_of:
                    found = _plural(kube, str(owner.get("apiVersion")), str(owner.get("kind")))
                    if found:
                        plural_of[key] = found
        return objects, plural_of
    finally:
        kube.close()


def _plural(kube: Any, api_version: str, kind: str) -> str | None:
    try:
        resource = kube.dynamic().resources.get(api_version=api_version, kind=kind)
    except Exception:  # unknown kind: the fallback plural is used
        return None
    return str(resource.name)
