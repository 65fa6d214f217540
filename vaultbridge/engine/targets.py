"""How each kind of Ceph target is read, written, verified and restored.

New values come in Secret data terms (data key -> value). Ceph is read and restored per *slot*:
one place in Ceph (a config option of one section, a config-key) with a stable id that is a valid
Secret data key, so a pre-image can be stashed in a Secret. ``slots()`` maps each slot to the
data key that feeds it. A value of ``None`` means "absent in Ceph".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal, Protocol

from vaultbridge.engine.ports import CephStore, ConfigKey
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import ConfigKeyTarget, ConfigTarget, CredentialSpec

Values = Mapping[str, Sensitive | None]
StashPolicy = Literal["auto", "always", "never"]


class TargetDriver(Protocol):
    """One rotation's view of its Ceph target; the hooks at the end let the generic path stay
    ignorant of the kind (cephx fills them, the plain targets need none)."""

    def describe(self) -> str: ...

    def data_keys(self) -> list[str]: ...

    def data_from_source(self, source: Mapping[str, Sensitive]) -> dict[str, Sensitive]: ...

    def slots(self) -> dict[str, str]: ...

    def read(self) -> dict[str, Sensitive | None]: ...

    def apply(self, data: Mapping[str, Sensitive]) -> None: ...

    def verify(self, data: Mapping[str, Sensitive]) -> list[str]: ...

    def restore(self, preimage: Values) -> None: ...

    def precheck(self) -> None: ...

    @property
    def journal_entity(self) -> str | None:
        """The entity a rotation's journal names (status.rotation.entity), if any."""
        ...

    @property
    def stash_policy(self) -> StashPolicy:
        """When a pre-image Secret is kept: ``auto`` unless the Secret already holds what Ceph
        has, ``always``, or ``never`` (nothing to restore but removing what was added)."""
        ...

    def check_secret_data(self, data: Mapping[str, Sensitive], where: str) -> None:
        """The Secret is the source: refuse data this target cannot take."""
        ...

    def check_new(self) -> None:
        """Before a rotation starts: refuse one that would overwrite what it did not make."""
        ...

    def before_promote(self) -> None:
        """The last step in Ceph before the Secret is written."""
        ...

    def holds_version(self, data: Mapping[str, Sensitive]) -> bool:
        """Does Ceph already hold ``data`` (nothing to rotate)?"""
        ...

    def settled(self) -> bool:
        """Besides the slots' values, does Ceph need nothing of a reconcile (the drift sweep)?"""
        ...


class PlainDriver:
    """The hooks of a target Ceph holds plain values for: none of them does anything."""

    journal_entity: str | None = None
    stash_policy: StashPolicy = "auto"

    def check_secret_data(self, data: Mapping[str, Sensitive], where: str) -> None:
        return None

    def check_new(self) -> None:
        return None

    def before_promote(self) -> None:
        return None

    def read(self) -> dict[str, Sensitive | None]:
        raise NotImplementedError

    def slots(self) -> dict[str, str]:
        raise NotImplementedError

    def holds_version(self, data: Mapping[str, Sensitive]) -> bool:
        return holds(self.read(), self.slots(), data)

    def settled(self) -> bool:
        return True


def holds(current: Values, slots: Mapping[str, str], data: Mapping[str, Sensitive | None]) -> bool:
    """Does Ceph (``current``, per slot) hold exactly ``data`` (per data key) in every slot?"""
    return all(current.get(slot) == data.get(key) for slot, key in slots.items())


def option_slot(who: str, option: str) -> str:
    """A stable Secret-data-key-safe id for one option of one section."""
    return "cfg-" + hashlib.sha256(f"{who}\0{option}".encode()).hexdigest()[:20]


class ConfigDriver(PlainDriver):
    """Options in the mon config database; several options are applied all-or-nothing."""

    def __init__(self, spec: CredentialSpec, ceph: CephStore) -> None:
        target = spec.target
        assert isinstance(target, ConfigTarget)  # chosen by the lifecycle of its kind
        self.ceph = ceph
        self.target = target
        field = spec.source.field if spec.source else spec.secret.key
        # data key of the Secret -> the options it feeds
        self.keys: dict[str, list[ConfigKey]] = {}
        self.last_read: dict[ConfigKey, Sensitive | None] | None = None
        self.source_field: dict[str, str] = {}
        for entry in target.entries:
            data_key = entry.field if target.is_list else spec.secret.key
            self.keys.setdefault(data_key, []).append((entry.who, entry.option))
            self.source_field[data_key] = entry.field if target.is_list else field

    def describe(self) -> str:
        return ", ".join(
            f"config {who}/{option}" for keys in self.keys.values() for who, option in keys
        )

    def data_keys(self) -> list[str]:
        return list(self.keys)

    def data_from_source(self, source: Mapping[str, Sensitive]) -> dict[str, Sensitive]:
        return {key: source[field] for key, field in self.source_field.items()}

    def slots(self) -> dict[str, str]:
        return {
            option_slot(who, option): key
            for key, options in self.keys.items()
            for who, option in options
        }

    def read(self) -> dict[str, Sensitive | None]:
        self.last_read = {
            option: self.ceph.config_read(*option)
            for options in self.keys.values()
            for option in options
        }
        return {option_slot(*option): value for option, value in self.last_read.items()}

    def read_all(self) -> dict[ConfigKey, Sensitive | None]:
        """Exact read-back for verification: ``config_read`` is exact (the mon's own stored
        value, cross-checked against ``config dump`` before it is trusted) and O(1), where a
        ``config dump`` grows with the whole database."""
        return {
            option: self.ceph.config_read(*option)
            for options in self.keys.values()
            for option in options
        }

    def apply(self, data: Mapping[str, Sensitive]) -> None:
        # the snapshot step has just read these options; the verify step reads them back
        self.ceph.config_apply_all(
            [
                (who, option, data[key])
                for key, options in self.keys.items()
                for who, option in options
            ],
            before=self.last_read,
            read_back=False,
        )

    def verify(self, data: Mapping[str, Sensitive]) -> list[str]:
        """The options whose exact read-back differs from ``data`` (empty: verified)."""
        current = self.read_all()
        return [
            f"{who}/{option}"
            for key, options in self.keys.items()
            for who, option in options
            if current[(who, option)] != data[key]
        ]

    def restore(self, preimage: Values) -> None:
        self.ceph.config_restore(
            {
                option: preimage.get(option_slot(*option))
                for options in self.keys.values()
                for option in options
            }
        )

    def precheck(self) -> None:
        for options in self.keys.values():
            for who, option in options:
                if not self.ceph.config_option_known(option):
                    raise PreconditionError(
                        "UnknownCephOption",
                        f"config {who}/{option}: Ceph does not know option {option!r}",
                    )


class ConfigKeyDriver(PlainDriver):
    """One key in the mon config-key store."""

    def __init__(self, spec: CredentialSpec, ceph: CephStore) -> None:
        target = spec.target
        assert isinstance(target, ConfigKeyTarget)  # chosen by the lifecycle of its kind
        self.ceph = ceph
        self.key = target.key
        self.data_key = spec.secret.key
        self.field = spec.source.field if spec.source else spec.secret.key

    def describe(self) -> str:
        return f"config-key {self.key}"

    def data_keys(self) -> list[str]:
        return [self.data_key]

    def data_from_source(self, source: Mapping[str, Sensitive]) -> dict[str, Sensitive]:
        return {self.data_key: source[self.field]}

    def slots(self) -> dict[str, str]:
        return {self.data_key: self.data_key}

    def read(self) -> dict[str, Sensitive | None]:
        return {self.data_key: self.ceph.config_key_get(self.key)}

    def apply(self, data: Mapping[str, Sensitive]) -> None:
        self.ceph.config_key_set(self.key, data[self.data_key])

    def verify(self, data: Mapping[str, Sensitive]) -> list[str]:
        return [] if self.read()[self.data_key] == data[self.data_key] else [self.key]

    def restore(self, preimage: Values) -> None:
        value = preimage.get(self.data_key)
        if value is None:
            self.ceph.config_key_remove(self.key)
        else:
            self.ceph.config_key_set(self.key, value)

    def precheck(self) -> None:
        return None
