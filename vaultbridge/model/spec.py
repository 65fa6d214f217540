"""The ``spec`` of a CredentialRotation, parsed and validated into frozen dataclasses.

``parse_spec`` takes the CR's camelCase ``spec`` mapping and either returns a ``CredentialSpec``
or raises ``SpecError`` listing every problem found, each as ``"<path>: <what>"``.
Credential values never live here: they travel as ``CredentialValues`` (field -> ``Sensitive``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Final, Literal

from vaultbridge.model.cluster import ClusterRef
from vaultbridge.model.sensitive import Sensitive

CredentialValues = Mapping[str, Sensitive]
"""A credential as read from Vault or the Secret: KV field (or data key) -> value."""

CAP_SERVICES: Final = ("mon", "osd", "mds", "mgr")
STRATEGIES: Final = ("alternate", "in-place")
KEY_TYPES: Final = ("aes", "aes256k")
DELETION_POLICIES: Final = ("Retain", "Delete")
ROLLOUT_PLURALS: Final = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}
ROLLOUT_KINDS: Final = tuple(ROLLOUT_PLURALS)
ROLLOUT_TARGETS_MAX: Final = 10
CEPHX_DATA_KEYS: Final = ("userID", "userKey", "keyring")
DEFAULT_FIELD: Final = "value"
DEFAULT_RETIRE_AFTER: Final = timedelta(minutes=10)
HISTORY_LIMIT_RANGE: Final = (1, 100)
KEEP_PRIOR_RANGE: Final = (1, 10)

Strategy = Literal["alternate", "in-place"]
KeyType = Literal["aes", "aes256k"]
DeletionPolicy = Literal["Retain", "Delete"]
TargetKind = Literal["config", "configKey", "cephx"]
"""The CRD's name for each kind of target (``spec.target.<kind>``)."""

_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class SpecError(ValueError):
    """The spec is invalid. ``problems`` holds one ``"<path>: <what>"`` line per problem."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        self.problems = problems
        super().__init__("invalid spec: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class CredentialRef:
    """Names one CredentialRotation: ``namespace/name``."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> CredentialRef:
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A further ownerReference for the Secret (same namespace, not the controller)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    """A workload in the CR's namespace rolled after each promotion (``rolloutRestartTargets``)."""

    kind: str  # one of ROLLOUT_KINDS
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class VaultSource:
    """Where the credential lives in Vault/OpenBao KV v2."""

    mount: str
    path: str
    field: str = DEFAULT_FIELD


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """The Kubernetes Secret vaultbridge writes (and, without a source, reads)."""

    name: str
    key: str = DEFAULT_FIELD
    extra_owners: tuple[OwnerRef, ...] = ()
    adopt: bool = False
    # None: the default, Delete for a Secret vaultbridge creates from a Vault source and Retain
    # for one it adopts or reads as the source (see docs/deletion.md)
    deletion_policy: DeletionPolicy | None = None


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One mon config database option and the credential field that feeds it."""

    who: str
    option: str
    field: str


@dataclass(frozen=True, slots=True)
class ConfigTarget:
    """Options in the mon config database, applied all-or-nothing.

    ``is_list`` tells the single form (data key ``secret.key``) from the list form (one data key
    per field, named after the field).
    """

    kind: ClassVar[TargetKind] = "config"
    entries: tuple[ConfigEntry, ...]
    is_list: bool
    config_keys: ClassVar[tuple[str, ...]] = ()  # the config-keys it names: none


@dataclass(frozen=True, slots=True)
class ConfigKeyTarget:
    """A key in the mon config-key store."""

    kind: ClassVar[TargetKind] = "configKey"
    key: str

    @property
    def config_keys(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True, slots=True)
class CephxTarget:
    """A cephx client entity (``alternate``: ``<entity>.<generation>``; ``in-place``: one key)."""

    kind: ClassVar[TargetKind] = "cephx"
    config_keys: ClassVar[tuple[str, ...]] = ()
    entity: str
    caps: tuple[tuple[str, str], ...]
    strategy: Strategy = "alternate"
    retire_after: timedelta = DEFAULT_RETIRE_AFTER
    keep_prior: int = 1
    deletion_policy: DeletionPolicy = "Retain"
    key_type: KeyType | None = None  # None: the cluster's preferred type (its monmap)


Target = ConfigTarget | ConfigKeyTarget | CephxTarget


@dataclass(frozen=True, slots=True)
class CredentialSpec:
    """A validated CredentialRotation spec."""

    source: VaultSource | None
    secret: SecretSpec
    target: Target
    schedule: str | None = None
    generate: bool = False
    max_age: timedelta | None = None
    suspend: bool = False
    history_limit: int = 10
    rollout_restart_targets: tuple[RolloutTarget, ...] = ()
    cluster: ClusterRef | None = None  # None: the default cluster (VAULTBRIDGE_CEPH__*)


def secret_data_keys(spec: CredentialSpec) -> tuple[str, ...]:
    """The data keys of the Secret vaultbridge writes for this spec, in a stable order."""
    target = spec.target
    if isinstance(target, CephxTarget):
        return CEPHX_DATA_KEYS
    if isinstance(target, ConfigTarget) and target.is_list:
        return tuple(dict.fromkeys(entry.field for entry in target.entries))
    return (spec.secret.key,)


def describe_target(spec: CredentialSpec) -> str:
    """One line naming what the credential is applied to (``status.targetDescription``)."""
    target = spec.target
    if isinstance(target, ConfigTarget):
        first = target.entries[0]
        more = f" +{len(target.entries) - 1}" if len(target.entries) > 1 else ""
        return f"config {first.who}/{first.option}{more}"
    if isinstance(target, ConfigKeyTarget):
        return f"config-key {target.key}"
    assert isinstance(target, CephxTarget)
    return f"cephx {target.entity} ({target.strategy})"


def source_fields(spec: CredentialSpec) -> tuple[str, ...]:
    """The KV fields read from the source (empty when the Secret itself is the source)."""
    if spec.source is None:
        return ()
    target = spec.target
    if isinstance(target, ConfigTarget):
        return tuple(dict.fromkeys(entry.field for entry in target.entries))
    return (spec.source.field,)


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``"720h"``, ``"1h30m"``, ``"45s"`` or ``"0"``."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: must be a string such as '720h' or '1h30m'")
    stripped = text.strip()
    if stripped == "0":
        return timedelta(0)
    seconds = 0.0
    position = 0
    while position < len(stripped):
        match = _DURATION_RE.match(stripped, position)
        if match is None:
            break
        seconds += float(match.group(1)) * _DURATION_UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not stripped or position != len(stripped):
        raise ValueError(
            f"invalid duration {text!r}: expected a number and unit (h, m, s, ms, us, ns) "
            "repeated, such as '720h', '1h30m' or '45s'"
        )
    return timedelta(seconds=seconds)


def parse_spec(obj: Mapping[str, Any]) -> CredentialSpec:
    """Validate a CR ``spec`` (camelCase) and build a ``CredentialSpec``.

    Raises ``SpecError`` listing every problem, not only the first.
    """
    from vaultbridge.model.spec_parser import SpecParser  # it builds what this module defines

    return SpecParser().parse(obj)
