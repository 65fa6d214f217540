"""Least-privilege policies for Vault, Kubernetes and Ceph, rendered from the CredentialRotations.

``vaultbridge policy render`` reads the CRs present in the cluster and prints what vaultbridge
needs and nothing more, so the policies stay in step with the credentials it manages:

- ``vault``: an HCL policy granting exactly the KV v2 ``data`` and ``metadata`` paths of the
  sources (``read``; ``create``/``update`` on data when vaultbridge generates; ``patch`` on
  metadata for the staging labels), ``sys/tools/random/*`` when anything is generated, and the
  token's own ``lookup-self``/``renew-self``/``capabilities-self``.
- ``kubernetes``: the Vault Kubernetes auth role binding the chart's ServiceAccount to that policy
  (JSON for ``bao write auth/kubernetes/role/<role> -``).
- ``ceph``: the mon caps of a dedicated ``client.vaultbridge`` entity: ``allow command`` grants
  limited to the configured options (``with who=... name=...``), config-keys (``with key=...``)
  and cephx entities (``with entity prefix ...``). ``auth import`` is never granted: it names no
  entity, so caps cannot scope it (in-place cephx rotation therefore needs an admin-level entity).
- ``rbac``: the Helm values that scope the chart's Roles: watched namespaces and the kinds named
  in ``spec.secret.extraOwners``, and get + patch of the workloads named in
  ``spec.rolloutRestartTargets`` (by name).

The renderers here are pure functions of parsed specs; the command
(``access_policies/command.py``) reads the CRs from the Kubernetes API. A CR whose target cannot
be expressed safely in a policy (a glob in a Vault path, a quote in a Ceph name, the
controller's own entity as a cephx target) is named with the problem, and nothing is rendered.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from vaultbridge.access_policies.clusters import (
    by_cluster,
    cluster_object_rules,
    per_cluster_script,
)
from vaultbridge.model.spec import (
    ROLLOUT_PLURALS,
    CephxTarget,
    ConfigKeyTarget,
    ConfigTarget,
    CredentialRef,
    CredentialSpec,
    SpecError,
    parse_spec,
)

KINDS: Final = ("vault", "kubernetes", "ceph", "rbac")

# characters allowed in the parts of a KV path we put into a policy: no globs (* +), no quotes
VAULT_PART_RE: Final = re.compile(r"[A-Za-z0-9_.@=-]+(/[A-Za-z0-9_.@=-]+)*")
# Ceph names go into quoted MonCap strings: no quotes, no spaces, no separators
_WHO_RE: Final = re.compile(r"[A-Za-z0-9_.:/-]+")
_OPTION_RE: Final = re.compile(r"[A-Za-z0-9_]+")
_CONFIG_KEY_RE: Final = re.compile(r"[A-Za-z0-9_.:/-]+")
ENTITY_RE: Final = re.compile(r"client\.[A-Za-z0-9_.-]+")


class PolicyError(ValueError):
    """Some CRs cannot be rendered; ``problems`` names each CR and what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Credential:
    """One CredentialRotation as the policies see it."""

    ref: CredentialRef
    spec: CredentialSpec


@dataclass(frozen=True)
class PolicyOptions:
    """Names the policies refer to (they must match the Helm release and Vault setup)."""

    policy_name: str = "vaultbridge"
    role: str = "vaultbridge"
    service_account: str = "vaultbridge"
    service_account_namespace: str = "vaultbridge"
    audience: str | None = None
    token_ttl: str = "1h"
    token_max_ttl: str = "24h"
    ceph_user: str = "client.vaultbridge"
    # KV v2 secret the Vault Agent renders the keyring of ``ceph_user`` from (mount, path)
    keyring_source: tuple[str, str] | None = None
    extra_owner_rules: tuple[tuple[str, str], ...] = field(default=())


# -- input ------------------------------------------------------------------------------------


def credentials_from(objects: Iterable[Mapping[str, Any]], ceph_user: str) -> list[Credential]:
    """Parse CR objects and check every target can be put in a policy.

    Raises :class:`PolicyError` naming each bad CR and its problem (all of them, not the first).
    """
    found: list[Credential] = []
    problems: list[str] = []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        ref = CredentialRef(str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        try:
            spec = parse_spec(obj.get("spec") or {})
        except SpecError as exc:
            problems += [f"CredentialRotation {ref}: {problem}" for problem in exc.problems]
            continue
        bad = target_problems(spec, ceph_user)
        if bad:
            problems += [f"CredentialRotation {ref}: {problem}" for problem in bad]
            continue
        found.append(Credential(ref, spec))
    if problems:
        raise PolicyError(problems)
    return sorted(found, key=lambda c: (c.ref.namespace, c.ref.name))


def target_problems(spec: CredentialSpec, ceph_user: str) -> list[str]:
    """Why ``spec`` cannot be expressed in a least-privilege policy (empty when it can)."""
    problems: list[str] = []
    if spec.source is not None:
        for part, value in (("mount", spec.source.mount), ("path", spec.source.path)):
            if not VAULT_PART_RE.fullmatch(value) or ".." in value.split("/"):
                problems.append(
                    f"spec.source.{part}: {value!r} cannot be granted exactly in a Vault policy "
                    "(use letters, digits, '_', '.', '-', '@', '=' and '/' only; '*' and '+' "
                    "are policy globs)"
                )
    target = spec.target
    if isinstance(target, ConfigTarget):
        for index, entry in enumerate(target.entries):
            where = "spec.target.config" + (f"[{index}]" if target.is_list else "")
            if not _WHO_RE.fullmatch(entry.who):
                problems.append(
                    f"{where}.who: {entry.who!r} cannot be scoped by a mon cap "
                    "(letters, digits, '_', '.', ':', '/', '-' only)"
                )
            if not _OPTION_RE.fullmatch(entry.option):
                problems.append(
                    f"{where}.option: {entry.option!r} is not a Ceph option name "
                    "(letters, digits and '_' only)"
                )
    elif isinstance(target, ConfigKeyTarget):
        if not _CONFIG_KEY_RE.fullmatch(target.key):
            problems.append(
                f"spec.target.configKey.key: {target.key!r} cannot be scoped by a mon cap "
                "(letters, digits, '_', '.', ':', '/', '-' only)"
            )
    elif isinstance(target, CephxTarget):
        scope = cephx_scope(target)
        if target.entity in ("client.admin", ceph_user) or (
            scope[0] == "prefix" and ceph_user.startswith(scope[1])
        ):
            problems.append(
                f"spec.target.cephx.entity: {target.entity!r} would let vaultbridge change its "
                f"own entity {ceph_user} or client.admin; pick another entity name"
            )
        if not ENTITY_RE.fullmatch(target.entity):
            problems.append(f"spec.target.cephx.entity: {target.entity!r} is not a client entity")
    return problems


def cephx_scope(target: CephxTarget) -> tuple[str, str]:
    """How the entities of a cephx target are matched: ``("prefix", "client.app.")`` for the
    alternate strategy (``client.app.<generation>``), ``("exact", "client.app")`` in place."""
    if target.strategy == "alternate":
        return ("prefix", target.entity + ".")
    return ("exact", target.entity)


# -- Vault ------------------------------------------------------------------------------------


def vault_paths(credentials: Sequence[Credential], options: PolicyOptions) -> dict[str, list[str]]:
    """Policy path -> capabilities (sorted), exactly what vaultbridge uses."""
    wanted: dict[str, set[str]] = {}
    for credential in credentials:
        source = credential.spec.source
        if source is None:
            continue
        data = f"{source.mount}/data/{source.path}"
        metadata = f"{source.mount}/metadata/{source.path}"
        wanted.setdefault(data, set()).add("read")
        if credential.spec.generate:
            wanted[data] |= {"create", "update"}
        wanted.setdefault(metadata, set()).update({"read", "patch"})
    if options.keyring_source is not None:
        mount, path = options.keyring_source
        wanted.setdefault(f"{mount}/data/{path}", set()).add("read")
    if any(c.spec.generate and c.spec.source is not None for c in credentials):
        wanted["sys/tools/random/*"] = {"update"}
    wanted["auth/token/lookup-self"] = {"read"}
    wanted["auth/token/renew-self"] = {"update"}
    wanted["sys/capabilities-self"] = {"update"}
    return {path: sorted(caps) for path, caps in wanted.items()}


def _users(credentials: Sequence[Credential], path: str) -> list[str]:
    users = []
    for credential in credentials:
        source = credential.spec.source
        if source is not None and path in (
            f"{source.mount}/data/{source.path}",
            f"{source.mount}/metadata/{source.path}",
        ):
            users.append(str(credential.ref))
    return users


_VAULT_WHY: Final = {
    "sys/tools/random/*": "random bytes for generated credentials and cephx keys",
    "auth/token/lookup-self": "its own token (Vault Agent and vaultbridge check it)",
    "auth/token/renew-self": "its own token (Vault Agent renews it)",
    "sys/capabilities-self": "`vaultbridge check` and dry runs ask what the token may do",
}


def vault_policy(credentials: Sequence[Credential], options: PolicyOptions) -> str:
    """The HCL policy text."""
    lines = [
        f"# Vault/OpenBao policy {options.policy_name!r} for vaultbridge, rendered by",
        "# `vaultbridge policy render --kind vault` from "
        f"{len(credentials)} CredentialRotation(s). Re-render when CRs change.",
    ]
    for path, caps in vault_paths(credentials, options).items():
        users = _users(credentials, path)
        if users:
            why = "credential source of " + ", ".join(users)
        elif options.keyring_source and path == "{}/data/{}".format(*options.keyring_source):
            why = f"the keyring of {options.ceph_user}, rendered by the Vault Agent"
        else:
            why = _VAULT_WHY.get(path, "")
        cap_list = ", ".join(json.dumps(c) for c in caps)
        lines += [
            "",
            f"# {why}",
            f"path {json.dumps(path)} {{",
            f"  capabilities = [{cap_list}]",
            "}",
        ]
    return "\n".join(lines) + "\n"


# -- Vault Kubernetes auth role ---------------------------------------------------------------


def kubernetes_auth_role(options: PolicyOptions) -> dict[str, Any]:
    """The body of ``auth/kubernetes/role/<role>``: the ServiceAccount gets only our policy."""
    role: dict[str, Any] = {
        "bound_service_account_names": [options.service_account],
        "bound_service_account_namespaces": [options.service_account_namespace],
        "token_policies": [options.policy_name],
        "token_no_default_policy": True,
        "token_ttl": options.token_ttl,
        "token_max_ttl": options.token_max_ttl,
        "token_type": "service",
        "alias_name_source": "serviceaccount_uid",
    }
    if options.audience:
        role["audience"] = options.audience
    return role


# -- Ceph -------------------------------------------------------------------------------------


def _grant(command: str, **constraints: str) -> str:
    text = f'allow command "{command}"'
    if constraints:
        text += " with " + " ".join(f'{k}="{v}"' for k, v in constraints.items())
    return text


def _grant_prefix(command: str, key: str, prefix: str) -> str:
    return f'allow command "{command}" with {key} prefix "{prefix}"'


def ceph_grants(credentials: Sequence[Credential]) -> list[str]:
    """The mon cap grants, in a stable order, without duplicates."""
    grants: list[str] = [_grant("version"), _grant("versions")]
    configs = [c for c in credentials if isinstance(c.spec.target, ConfigTarget)]
    if configs:
        grants.append(_grant("config dump"))
    for credential in credentials:
        target = credential.spec.target
        if isinstance(target, ConfigTarget):
            grants += _config_grants(target)
        elif isinstance(target, ConfigKeyTarget):
            commands = ("config-key get", "config-key exists", "config-key set", "config-key rm")
            grants += [_grant(command, key=target.key) for command in commands]
        else:
            grants += _cephx_grants(target)
    prefix = os.path.commonprefix(  # noqa: RUF071 - a key prefix, not a path
        [key for c in credentials for key in c.spec.target.config_keys]
    )
    if prefix:  # the drift sweep's one listing of them (engine/drift.py); none unrestricted
        grants.append(_grant_prefix("config-key dump", "key", prefix))
    if any(isinstance(c.spec.target, CephxTarget) for c in credentials):
        # the monmap says which key types the cluster allows (Tentacle: AES256K only)
        grants += [_grant("quorum_status"), _grant("sessions"), _grant("mon dump")]
    return list(dict.fromkeys(grants))


def _config_grants(target: ConfigTarget) -> list[str]:
    grants: list[str] = []
    for entry in target.entries:
        for command in ("config set", "config rm"):
            grants.append(_grant(command, who=entry.who, name=entry.option))
        grants.append(_grant("config help", key=entry.option))
        # the O(1) exact read of the option (the mon's own stored value)
        grants.append(_grant("config-key get", key=f"config/{entry.who}/{entry.option}"))
    return grants


def _cephx_grants(target: CephxTarget) -> list[str]:
    kind, scope = cephx_scope(target)
    grants: list[str] = []
    for command in ("auth get", "auth add", "auth caps", "auth rm"):
        if kind == "prefix":
            grants.append(_grant_prefix(command, "entity", scope))
        else:
            grants.append(_grant(command, entity=scope))
    if kind == "prefix":  # an existing base entity is adopted, later retired
        grants += [_grant(command, entity=target.entity) for command in ("auth get", "auth rm")]
    if kind == "exact":  # Ceph >= 17 swaps in place with pending keys
        for command in ("auth get-or-create-pending", "auth commit-pending", "auth clear-pending"):
            grants.append(_grant(command, entity=scope))
    return grants


def ceph_caps(credentials: Sequence[Credential]) -> dict[str, str]:
    """``{"mon": "<grants>"}``: no osd, mds or mgr caps are needed."""
    return {"mon": ", ".join(ceph_grants(credentials))}


def in_place_credentials(credentials: Sequence[Credential]) -> list[Credential]:
    return [
        c
        for c in credentials
        if isinstance(c.spec.target, CephxTarget) and c.spec.target.strategy == "in-place"
    ]


def ceph_script(credentials: Sequence[Credential], options: PolicyOptions) -> str:
    caps = ceph_caps(credentials)["mon"]
    user = options.ceph_user
    lines = [
        f"# cephx caps for {user}, rendered by `vaultbridge policy render --kind ceph` from",
        f"# {len(credentials)} CredentialRotation(s). Run as client.admin; re-run when CRs change.",
        "# Only `allow command` grants: each names the option, config-key or entity prefix it may",
        "# touch. `auth import` is never granted (caps cannot scope it).",
    ]
    in_place = in_place_credentials(credentials)
    if in_place:
        names = ", ".join(str(c.ref) for c in in_place)
        lines += [
            f"# WARNING: {names} use(s) strategy in-place, which needs `auth import` on Pacific:",
            "# these caps cannot allow it. Use strategy alternate, or run those rotations with an",
            "# admin-level entity.",
        ]
    lines += [
        "# new entity:",
        f"ceph auth get-or-create {shlex.quote(user)} mon {shlex.quote(caps)}",
        "# existing entity (replaces its caps):",
        f"# ceph auth caps {shlex.quote(user)} mon {shlex.quote(caps)}",
    ]
    return "\n".join(lines) + "\n"


# -- Kubernetes RBAC (Helm values) ------------------------------------------------------------


def rbac_values(credentials: Sequence[Credential], plural_of: Mapping[str, str]) -> dict[str, Any]:
    """Helm values scoping the chart's Roles to these CRs.

    ``plural_of`` maps ``"<apiVersion>/<Kind>"`` to the resource plural (from discovery); kinds
    missing from it fall back to the lower-cased kind plus ``s``.
    """
    namespaces = sorted({c.ref.namespace for c in credentials})
    rules: dict[str, set[str]] = {}
    for credential in credentials:
        for owner in credential.spec.secret.extra_owners:
            group = owner.api_version.rpartition("/")[0]
            plural = plural_of.get(f"{owner.api_version}/{owner.kind}", owner.kind.lower() + "s")
            rules.setdefault(group, set()).add(plural)
    rollouts: dict[str, set[str]] = {}
    for credential in credentials:
        for target in credential.spec.rollout_restart_targets:
            rollouts.setdefault(ROLLOUT_PLURALS[target.kind], set()).add(target.name)
    values: dict[str, Any] = {
        "watchNamespaces": namespaces,
        "rbac": {
            "extraOwnerRules": [
                {"apiGroups": [group], "resources": sorted(plurals)}
                for group, plurals in sorted(rules.items())
            ],
            "rolloutRestartRules": [
                {"resources": [plural], "resourceNames": sorted(names)}
                for plural, names in sorted(rollouts.items())
            ],
        },
    }
    objects = cluster_object_rules(credentials)
    if objects:  # only when some credential names its cluster
        values["rbac"]["cephClusterObjects"] = objects
    return values


# -- everything -------------------------------------------------------------------------------


def render_all(
    credentials: Sequence[Credential],
    options: PolicyOptions,
    plural_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """All four, as data (``--output json``)."""
    return {
        "vault": {"name": options.policy_name, "policy": vault_policy(credentials, options)},
        "kubernetes": {"role": options.role, "config": kubernetes_auth_role(options)},
        "ceph": {
            "entity": options.ceph_user,
            "caps": ceph_caps(credentials),
            "inPlaceNeedsAdmin": [str(c.ref) for c in in_place_credentials(credentials)],
            "clusters": {
                key: {"caps": ceph_caps(group), "credentials": [str(c.ref) for c in group]}
                for key, group in by_cluster(credentials).items()
            },
        },
        "rbac": rbac_values(credentials, plural_of or {}),
        "credentials": [str(c.ref) for c in credentials],
    }


def render_text(
    kind: str,
    credentials: Sequence[Credential],
    options: PolicyOptions,
    plural_of: Mapping[str, str] | None = None,
) -> str:
    """One kind as text ready to pipe into its tool, or ``all`` with headers."""
    if kind == "vault":
        return vault_policy(credentials, options)
    if kind == "kubernetes":
        return json.dumps(kubernetes_auth_role(options), indent=2) + "\n"
    if kind == "ceph":
        return per_cluster_script(credentials, lambda group: ceph_script(group, options))
    if kind == "rbac":
        return yaml.safe_dump(rbac_values(credentials, plural_of or {}), sort_keys=False)
    if kind != "all":
        raise ValueError(f"unknown policy kind {kind!r}")
    sections = [
        (
            f"Vault policy: bao policy write {options.policy_name} -",
            render_text("vault", credentials, options),
        ),
        (
            f"Vault Kubernetes auth role: bao write auth/kubernetes/role/{options.role} -",
            render_text("kubernetes", credentials, options),
        ),
        ("cephx caps: run as client.admin", render_text("ceph", credentials, options)),
        (
            "Helm values (RBAC scope): helm upgrade ... -f -",
            render_text("rbac", credentials, options, plural_of),
        ),
    ]
    return "\n".join(f"#### {title}\n{body}" for title, body in sections)
