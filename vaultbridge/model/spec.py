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
from typing import Any, Final, Literal

from vaultbridge.model.sensitive import Sensitive

CredentialValues = Mapping[str, Sensitive]
"""A credential as read from Vault or the Secret: KV field (or data key) -> value."""

CAP_SERVICES: Final = ("mon", "osd", "mds", "mgr")
STRATEGIES: Final = ("alternate", "in-place")
DELETION_POLICIES: Final = ("Retain", "Delete")
CEPHX_DATA_KEYS: Final = ("userID", "userKey", "keyring")
DEFAULT_FIELD: Final = "value"
DEFAULT_RETIRE_AFTER: Final = timedelta(minutes=10)
HISTORY_LIMIT_RANGE: Final = (1, 100)
KEEP_PRIOR_RANGE: Final = (1, 10)

Strategy = Literal["alternate", "in-place"]
DeletionPolicy = Literal["Retain", "Delete"]

_ENTITY_RE: Final = re.compile(r"client\.[A-Za-z0-9_.-]+")
_K8S_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DATA_KEY_RE: Final = re.compile(r"[-._a-zA-Z0-9]+")
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class OwnerRef:
    """A further ownerReference for the Secret (same namespace, not the controller)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class VaultSource:
    """Where the credential lives in Vault/OpenBao KV v2."""

    mount: str
    path: str
    field: str = DEFAULT_FIELD


@dataclass(frozen=True)
class SecretSpec:
    """The Kubernetes Secret vaultbridge writes (and, without a source, reads)."""

    name: str
    key: str = DEFAULT_FIELD
    extra_owners: tuple[OwnerRef, ...] = ()
    adopt: bool = False
    # None: the default, Delete for a Secret vaultbridge creates from a Vault source and Retain
    # for one it adopts or reads as the source (see docs/deletion.md)
    deletion_policy: DeletionPolicy | None = None


@dataclass(frozen=True)
class ConfigEntry:
    """One mon config database option and the credential field that feeds it."""

    who: str
    option: str
    field: str


@dataclass(frozen=True)
class ConfigTarget:
    """Options in the mon config database, applied all-or-nothing.

    ``is_list`` tells the single form (data key ``secret.key``) from the list form (one data key
    per field, named after the field).
    """

    entries: tuple[ConfigEntry, ...]
    is_list: bool


@dataclass(frozen=True)
class ConfigKeyTarget:
    """A key in the mon config-key store."""

    key: str


@dataclass(frozen=True)
class CephxTarget:
    """A cephx client entity (``alternate``: ``<entity>.<generation>``; ``in-place``: one key)."""

    entity: str
    caps: tuple[tuple[str, str], ...]
    strategy: Strategy = "alternate"
    retire_after: timedelta = DEFAULT_RETIRE_AFTER
    keep_prior: int = 1
    deletion_policy: DeletionPolicy = "Retain"


Target = ConfigTarget | ConfigKeyTarget | CephxTarget


@dataclass(frozen=True)
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
    return _SpecParser().parse(obj)


class _SpecParser:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def parse(self, obj: Any) -> CredentialSpec:
        if not isinstance(obj, Mapping):
            raise SpecError(("spec: must be an object",))
        source = self.source(obj.get("source"))
        secret = self.secret(obj.get("secret"))
        default_field = source.field if source is not None else DEFAULT_FIELD
        target = self.target(obj.get("target"), default_field)
        schedule = self.schedule(obj.get("schedule"))
        is_cephx = isinstance(target, CephxTarget)
        generate = self.boolean(obj, "generate", "spec.generate", default=is_cephx)
        if generate and obj.get("source") is None:
            if "generate" in obj:
                self.problem("spec.source", "required when spec.generate is true")
            elif is_cephx:
                self.problem(
                    "spec.source",
                    "required for cephx targets unless spec.generate is false",
                )
        max_age = self.duration(obj.get("maxAge"), "spec.maxAge", positive=True)
        suspend = self.boolean(obj, "suspend", "spec.suspend", default=False)
        history_limit = self.integer(
            obj.get("historyLimit"), "spec.historyLimit", default=10, bounds=HISTORY_LIMIT_RANGE
        )
        if secret is not None and secret.deletion_policy == "Delete" and obj.get("source") is None:
            self.problem(
                "spec.secret.deletionPolicy",
                "Delete is not allowed without spec.source: the Secret is the source, the "
                "user's own data, and is always retained",
            )
        if self.problems or secret is None or target is None:
            raise SpecError(tuple(self.problems))
        return CredentialSpec(
            source=source,
            secret=secret,
            target=target,
            schedule=schedule,
            generate=generate,
            max_age=max_age,
            suspend=suspend,
            history_limit=history_limit,
        )

    # -- building blocks -------------------------------------------------------------------

    def mapping(self, value: Any, path: str, *, required: bool) -> Mapping[str, Any] | None:
        if value is None:
            if required:
                self.problem(path, "required")
            return None
        if not isinstance(value, Mapping):
            self.problem(path, "must be an object")
            return None
        return value

    def string(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        pattern_hint: str = "",
    ) -> str | None:
        value = obj.get(key)
        if value is None:
            if default is None:
                self.problem(path, "required")
            return default
        if not isinstance(value, str):
            self.problem(path, "must be a string")
            return None
        if not value.strip():
            self.problem(path, "must not be empty")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(path, f"{value!r} {pattern_hint}")
            return None
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, "must be true or false")
            return default
        return value

    def integer(self, value: Any, path: str, *, default: int, bounds: tuple[int, int]) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, "must be an integer")
            return default
        low, high = bounds
        if not low <= value <= high:
            self.problem(path, f"must be between {low} and {high}, got {value}")
            return default
        return value

    def duration(self, value: Any, path: str, *, positive: bool) -> timedelta | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(path, "must be a duration string such as '720h' or '10m'")
            return None
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None
        if positive and parsed <= timedelta(0):
            self.problem(path, f"must be greater than zero, got {value!r}")
            return None
        return parsed

    # -- sections --------------------------------------------------------------------------

    def source(self, value: Any) -> VaultSource | None:
        source = self.mapping(value, "spec.source", required=False)
        if source is None:
            return None
        mount = self.string(source, "mount", "spec.source.mount")
        path = self.string(source, "path", "spec.source.path")
        field = self.string(source, "field", "spec.source.field", default=DEFAULT_FIELD)
        if mount is None or path is None or field is None:
            return None
        return VaultSource(mount=mount.strip("/"), path=path.strip("/"), field=field)

    def secret(self, value: Any) -> SecretSpec | None:
        secret = self.mapping(value, "spec.secret", required=True)
        if secret is None:
            return None
        name = self.string(
            secret,
            "name",
            "spec.secret.name",
            pattern=_K8S_NAME_RE,
            pattern_hint="is not a valid Secret name (lowercase RFC 1123 subdomain)",
        )
        key = self.string(
            secret,
            "key",
            "spec.secret.key",
            default=DEFAULT_FIELD,
            pattern=_DATA_KEY_RE,
            pattern_hint="is not a valid Secret data key ([-._a-zA-Z0-9]+)",
        )
        owners = self.extra_owners(secret.get("extraOwners"))
        adopt = self.boolean(secret, "adopt", "spec.secret.adopt", default=False)
        policy = self.deletion_policy(secret, "spec.secret.deletionPolicy")
        if name is None or key is None or owners is None or policy == "invalid":
            return None
        return SecretSpec(
            name=name, key=key, extra_owners=owners, adopt=adopt, deletion_policy=policy
        )

    def deletion_policy(
        self, obj: Mapping[str, Any], path: str
    ) -> Literal["Retain", "Delete", "invalid"] | None:
        """``Retain``, ``Delete``, None when absent, or ``"invalid"`` (reported)."""
        value = obj.get("deletionPolicy")
        if value is None:
            return None
        if value == "Retain":
            return "Retain"
        if value == "Delete":
            return "Delete"
        self.problem(path, f"must be Retain or Delete, got {value!r}")
        return "invalid"

    def extra_owners(self, value: Any) -> tuple[OwnerRef, ...] | None:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem("spec.secret.extraOwners", "must be a list")
            return None
        owners: list[OwnerRef] = []
        ok = True
        for index, item in enumerate(value):
            path = f"spec.secret.extraOwners[{index}]"
            owner = self.mapping(item, path, required=True)
            if owner is None:
                ok = False
                continue
            api_version = self.string(owner, "apiVersion", f"{path}.apiVersion")
            kind = self.string(owner, "kind", f"{path}.kind")
            name = self.string(owner, "name", f"{path}.name")
            if api_version is None or kind is None or name is None:
                ok = False
                continue
            owners.append(OwnerRef(api_version=api_version, kind=kind, name=name))
        return tuple(owners) if ok else None

    def target(self, value: Any, default_field: str) -> Target | None:
        target = self.mapping(value, "spec.target", required=True)
        if target is None:
            return None
        present = [
            kind for kind in ("config", "configKey", "cephx") if target.get(kind) is not None
        ]
        if not present:
            self.problem("spec.target", "exactly one of config, configKey, cephx is required")
            return None
        if len(present) > 1:
            self.problem(
                "spec.target",
                f"exactly one of config, configKey, cephx is allowed, got {', '.join(present)}",
            )
            return None
        kind = present[0]
        if kind == "config":
            return self.config(target["config"], default_field)
        if kind == "configKey":
            return self.config_key(target["configKey"])
        return self.cephx(target["cephx"])

    def config(self, value: Any, default_field: str) -> ConfigTarget | None:
        path = "spec.target.config"
        if isinstance(value, Mapping):
            entry = self.config_entry(value, path, default_field=default_field)
            return None if entry is None else ConfigTarget(entries=(entry,), is_list=False)
        if not isinstance(value, list):
            self.problem(path, "must be an object or a list of objects")
            return None
        if not value:
            self.problem(path, "must not be empty")
            return None
        entries: list[ConfigEntry] = []
        seen: dict[tuple[str, str], int] = {}
        ok = True
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            mapping = self.mapping(item, item_path, required=True)
            entry = None if mapping is None else self.config_entry(mapping, item_path)
            if entry is None:
                ok = False
                continue
            first = seen.setdefault((entry.who, entry.option), index)
            if first != index:
                self.problem(
                    item_path,
                    f"duplicate of {path}[{first}] (who={entry.who}, option={entry.option})",
                )
                ok = False
                continue
            entries.append(entry)
        return ConfigTarget(entries=tuple(entries), is_list=True) if ok else None

    def config_entry(
        self, obj: Mapping[str, Any], path: str, *, default_field: str | None = None
    ) -> ConfigEntry | None:
        who = self.string(obj, "who", f"{path}.who")
        option = self.string(obj, "option", f"{path}.option")
        field = self.string(
            obj,
            "field",
            f"{path}.field",
            default=default_field,
            pattern=_DATA_KEY_RE,
            pattern_hint="is not a valid Secret data key ([-._a-zA-Z0-9]+)",
        )
        if who is None or option is None or field is None:
            return None
        return ConfigEntry(who=who, option=option, field=field)

    def config_key(self, value: Any) -> ConfigKeyTarget | None:
        obj = self.mapping(value, "spec.target.configKey", required=True)
        if obj is None:
            return None
        key = self.string(obj, "key", "spec.target.configKey.key")
        return None if key is None else ConfigKeyTarget(key=key)

    def cephx(self, value: Any) -> CephxTarget | None:
        path = "spec.target.cephx"
        obj = self.mapping(value, path, required=True)
        if obj is None:
            return None
        entity = self.string(
            obj,
            "entity",
            f"{path}.entity",
            pattern=_ENTITY_RE,
            pattern_hint="must be 'client.' followed by letters, digits, '_', '.' or '-'",
        )
        caps = self.caps(obj.get("caps"), f"{path}.caps")
        strategy = self.string(obj, "strategy", f"{path}.strategy", default="alternate")
        if strategy is not None and strategy not in STRATEGIES:
            self.problem(f"{path}.strategy", f"must be alternate or in-place, got {strategy!r}")
            strategy = None
        retire_after: timedelta | None = DEFAULT_RETIRE_AFTER
        if obj.get("retireAfter") is not None:
            retire_after = self.duration(
                obj.get("retireAfter"), f"{path}.retireAfter", positive=False
            )
        keep_prior = self.integer(
            obj.get("keepPrior"), f"{path}.keepPrior", default=1, bounds=KEEP_PRIOR_RANGE
        )
        policy = self.deletion_policy(obj, f"{path}.deletionPolicy")
        if (
            entity is None
            or caps is None
            or strategy is None
            or retire_after is None
            or policy == "invalid"
        ):
            return None
        return CephxTarget(
            entity=entity,
            caps=caps,
            strategy="alternate" if strategy == "alternate" else "in-place",
            retire_after=retire_after,
            keep_prior=keep_prior,
            deletion_policy="Delete" if policy == "Delete" else "Retain",
        )

    def caps(self, value: Any, path: str) -> tuple[tuple[str, str], ...] | None:
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.problem(path, "must be an object mapping mon/osd/mds/mgr to a cap string")
            return None
        ok = True
        for service, cap in value.items():
            if service not in CAP_SERVICES:
                self.problem(f"{path}.{service}", "unknown service (expected mon, osd, mds, mgr)")
                ok = False
            elif not isinstance(cap, str) or not cap.strip():
                self.problem(f"{path}.{service}", "must be a non-empty string")
                ok = False
        if not ok:
            return None
        return tuple((service, value[service]) for service in CAP_SERVICES if service in value)

    def schedule(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem("spec.schedule", "must be a string")
            return None
        fields = value.split()
        if len(fields) != 5:
            self.problem(
                "spec.schedule",
                "must have 5 fields (minute hour day-of-month month day-of-week), "
                f"got {len(fields)}",
            )
            return None
        return " ".join(fields)
