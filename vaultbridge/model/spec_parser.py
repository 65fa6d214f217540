"""The parser behind ``parse_spec``: the CR's camelCase ``spec`` into a ``CredentialSpec``,
every problem reported at once with its path."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final, Literal

from vaultbridge.model.cluster import ROOK_ENDPOINTS, ClusterRef
from vaultbridge.model.spec import (
    CAP_SERVICES,
    DEFAULT_FIELD,
    DEFAULT_RETIRE_AFTER,
    HISTORY_LIMIT_RANGE,
    KEEP_PRIOR_RANGE,
    KEY_TYPES,
    ROLLOUT_KINDS,
    ROLLOUT_TARGETS_MAX,
    STRATEGIES,
    CephxTarget,
    ConfigEntry,
    ConfigKeyTarget,
    ConfigTarget,
    CredentialSpec,
    OwnerRef,
    RolloutTarget,
    SecretSpec,
    SpecError,
    Target,
    VaultSource,
    parse_duration,
)

_ENTITY_RE: Final = re.compile(r"client\.[A-Za-z0-9_.-]+")
_K8S_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DATA_KEY_RE: Final = re.compile(r"[-._a-zA-Z0-9]+")


class SpecParser:
    """Collects every problem of one spec (``"<path>: <what>"``) before it gives up."""

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
        rollouts = self.rollout_targets(obj.get("rolloutRestartTargets"))
        cluster = self.cluster(obj.get("cluster"))
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
            rollout_restart_targets=rollouts,
            cluster=cluster,
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
        # the mount and field are the same for most CRs: one copy each
        return VaultSource(
            mount=sys.intern(mount.strip("/")), path=path.strip("/"), field=sys.intern(field)
        )

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

    def cluster(self, value: Any) -> ClusterRef | None:
        cluster = self.mapping(value, "spec.cluster", required=False)
        if cluster is None:
            return None
        forms = [form for form in ("rook", "external") if form in cluster]
        if len(forms) != 1:
            self.problem("spec.cluster", "must name exactly one of rook or external")
            return None
        form = forms[0]
        path = f"spec.cluster.{form}"
        body = self.mapping(cluster[form], path, required=True)
        if body is None:
            return None
        hint = "is not a valid object name (lowercase RFC 1123 subdomain)"

        def name(key: str, default: str | None = None) -> str | None:
            return self.string(
                body, key, f"{path}.{key}", default=default, pattern=_K8S_NAME_RE, pattern_hint=hint
            )

        namespace = name("namespace")
        secret = name("secret")
        config_map = name("endpoints", ROOK_ENDPOINTS) if form == "rook" else name("configMap")
        if namespace is None or secret is None or config_map is None:
            return None
        return ClusterRef(
            "rook" if form == "rook" else "external",
            sys.intern(namespace),
            sys.intern(config_map),
            sys.intern(secret),
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

    def rollout_targets(self, value: Any) -> tuple[RolloutTarget, ...]:
        where = "spec.rolloutRestartTargets"
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(where, "must be a list")
            return ()
        if len(value) > ROLLOUT_TARGETS_MAX:
            self.problem(where, f"at most {ROLLOUT_TARGETS_MAX} workloads, got {len(value)}")
        targets: list[RolloutTarget] = []
        for index, item in enumerate(value):
            path = f"{where}[{index}]"
            entry = self.mapping(item, path, required=True)
            if entry is None:
                continue
            unknown = sorted(set(entry) - {"kind", "name"})
            if unknown:
                self.problem(path, f"unknown field(s) {', '.join(unknown)}")
            kind = self.string(entry, "kind", f"{path}.kind")
            if kind is not None and kind not in ROLLOUT_KINDS:
                self.problem(
                    f"{path}.kind", f"must be one of {', '.join(ROLLOUT_KINDS)}, got {kind!r}"
                )
                kind = None
            name = self.string(
                entry,
                "name",
                f"{path}.name",
                pattern=_K8S_NAME_RE,
                pattern_hint="is not a valid object name (lowercase RFC 1123 subdomain)",
            )
            if kind is None or name is None:
                continue
            target = RolloutTarget(kind, name)
            if target in targets:
                self.problem(path, f"{target} is listed twice")
                continue
            targets.append(target)
        return tuple(targets)

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
        key_type = None
        if obj.get("keyType") is not None:
            key_type = self.string(obj, "keyType", f"{path}.keyType")
        if key_type is not None and key_type not in KEY_TYPES:
            self.problem(f"{path}.keyType", f"must be aes or aes256k, got {key_type!r}")
            return None
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
            key_type=None if key_type is None else "aes256k" if key_type == "aes256k" else "aes",
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
