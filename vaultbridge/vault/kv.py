"""KV v2 as vaultbridge's source of truth: versions, cheap metadata polling, check-and-set
writes, staging labels in custom metadata, and random bytes for generated credentials.

Values read from Vault become :class:`Sensitive` here, at once. String values are kept as they
are; other JSON values (numbers, lists, objects) are wrapped as their compact JSON text.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import hvac.exceptions as hvac_exc

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.vault.client import VaultClient
from vaultbridge.vault.errors import VaultError, VaultNotFound

LABEL_CURRENT: Final = "vaultbridge-current"
LABEL_PREVIOUS: Final = "vaultbridge-previous"
LABEL_PENDING: Final = "vaultbridge-pending"
_LABELS: Final = (LABEL_CURRENT, LABEL_PREVIOUS, LABEL_PENDING)

PASSWORD_ALPHABET: Final = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"  # 64: byte & 63 is uniform
)
MAX_RANDOM_BYTES: Final = 128 * 1024


@dataclass(frozen=True)
class SecretVersion:
    """One KV v2 version. ``data`` is empty when the version is deleted or destroyed."""

    version: int
    data: Mapping[str, Sensitive]
    created_time: datetime
    deleted: bool
    destroyed: bool = False
    custom_metadata: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # field names only; Sensitive hides values anyway
        return (
            f"SecretVersion(version={self.version}, fields={sorted(self.data)}, "
            f"created_time={self.created_time.isoformat()}, deleted={self.deleted}, "
            f"destroyed={self.destroyed})"
        )


@dataclass(frozen=True)
class KvVersionInfo:
    created_time: datetime
    deletion_time: datetime | None
    destroyed: bool

    @property
    def deleted(self) -> bool:
        return self.deletion_time is not None


@dataclass(frozen=True)
class StagingLabels:
    """The vaultbridge-* custom metadata of a KV v2 path (None: label absent)."""

    current: int | None = None
    previous: int | None = None
    pending: int | None = None


@dataclass(frozen=True)
class KvMetadata:
    current_version: int
    oldest_version: int
    custom_metadata: dict[str, str]
    versions: dict[int, KvVersionInfo]
    updated_time: datetime | None = None
    mount: str = ""
    path: str = ""

    @property
    def labels(self) -> StagingLabels:
        return _parse_labels(self.custom_metadata, self.mount, self.path)


class KvV2Source:
    """KV v2 operations on one :class:`VaultClient`."""

    def __init__(self, client: VaultClient) -> None:
        self.client = client

    # -- reads ----------------------------------------------------------------------------

    def read(self, mount: str, path: str, version: int | None = None) -> SecretVersion:
        """The latest version, or ``version``. A deleted/destroyed version comes back with
        ``deleted``/``destroyed`` set and no data; a version that never existed (or a missing
        path or mount) raises :class:`VaultNotFound`."""
        mount, path = _norm(mount), _norm(path)
        params = {} if version is None else {"version": int(version)}
        url = f"/v1/{mount}/data/{path}"

        def fetch(_: Any) -> Any:
            try:
                return self.client.request("GET", url, params=params)
            except hvac_exc.InvalidPath as exc:
                # a deleted or destroyed version: 404, but the body still carries its metadata
                body = exc.json if isinstance(exc.json, dict) else {}
                meta = (body.get("data") or {}).get("metadata") if body else None
                if isinstance(meta, dict) and meta.get("version"):
                    return {"data": {"data": None, "metadata": meta}}
                raise

        if version is None:
            missing = f"KV v2 secret {path!r} not found in mount {mount!r}"
        else:
            missing = (
                f"version {version} of KV v2 secret {path!r} in mount {mount!r} does not exist"
            )
        response = self.client.call(
            fetch, op="read", path=f"{mount}/data/{path}", not_found=missing
        )
        body = response.get("data") if isinstance(response, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise VaultError(
                f"{mount}/{path} did not answer like a KV v2 secret (is {mount!r} a KV v2 mount?)"
            )
        with _malformed(f"{mount}/data/{path}"):
            meta = body["metadata"]
            raw = body.get("data")
            data = {str(k): _wrap(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            deletion = _time_or_none(meta.get("deletion_time"))
            return SecretVersion(
                version=_whole(meta["version"]),
                data=data,
                created_time=_time(meta.get("created_time")),
                deleted=deletion is not None or bool(meta.get("destroyed")),
                destroyed=bool(meta.get("destroyed")),
                custom_metadata=_str_dict(meta.get("custom_metadata")),
            )

    def read_field(
        self, mount: str, path: str, field: str, version: int | None = None
    ) -> Sensitive:
        """One field of a version. Missing field: the error lists the field names present."""
        secret = self.read(mount, path, version)
        where = (
            f"version {secret.version} of KV v2 secret {_norm(path)!r} in mount {_norm(mount)!r}"
        )
        if secret.deleted:
            state = "destroyed" if secret.destroyed else "deleted"
            raise VaultNotFound(f"{where} is {state}; field {field!r} cannot be read")
        if field not in secret.data:
            names = ", ".join(repr(n) for n in sorted(secret.data)) or "none"
            raise VaultNotFound(f"field {field!r} not found in {where}; fields present: {names}")
        return secret.data[field]

    def metadata(self, mount: str, path: str) -> KvMetadata:
        """``<mount>/metadata/<path>``: versions and custom metadata, no values. The poll call."""
        mount, path = _norm(mount), _norm(path)
        response = self.client.call(
            lambda _: self.client.request("GET", f"/v1/{mount}/metadata/{path}"),
            op="read metadata of",
            path=f"{mount}/metadata/{path}",
            not_found=f"KV v2 secret {path!r} not found in mount {mount!r} (no metadata)",
        )
        body = response.get("data") if isinstance(response, dict) else None
        if not isinstance(body, dict):
            raise VaultError(f"{mount}/metadata/{path} did not answer like KV v2 metadata")
        with _malformed(f"{mount}/metadata/{path}"):
            versions: dict[int, KvVersionInfo] = {}
            for number, info in (body.get("versions") or {}).items():
                if isinstance(info, dict):
                    versions[_whole(number)] = KvVersionInfo(
                        created_time=_time(info.get("created_time")),
                        deletion_time=_time_or_none(info.get("deletion_time")),
                        destroyed=bool(info.get("destroyed")),
                    )
            return KvMetadata(
                current_version=_whole(body.get("current_version") or 0),
                oldest_version=_whole(body.get("oldest_version") or 0),
                custom_metadata=_str_dict(body.get("custom_metadata")),
                versions=versions,
                updated_time=_time_or_none(body.get("updated_time")),
                mount=mount,
                path=path,
            )

    def labels(self, mount: str, path: str) -> StagingLabels:
        return self.metadata(mount, path).labels

    # -- writes ---------------------------------------------------------------------------

    def write(self, mount: str, path: str, data: Mapping[str, Sensitive], cas: int | None) -> int:
        """Write a new version; returns its number.

        ``cas``: the version the caller believes is current (0: the path must not exist yet);
        a mismatch raises :class:`~vaultbridge.vault.errors.VaultConflict`. ``None`` writes
        unconditionally (refused by mounts that require cas).
        """
        mount, path = _norm(mount), _norm(path)
        for key, value in data.items():
            if not isinstance(value, Sensitive):
                raise TypeError(f"value of field {key!r} must be Sensitive")
        response = self.client.call(
            lambda _: self.client.request(
                "POST",
                f"/v1/{mount}/data/{path}",
                json={
                    "data": {k: v.reveal() for k, v in data.items()},
                    **({} if cas is None else {"options": {"cas": cas}}),
                },
            ),
            op="write",
            path=f"{mount}/data/{path}",
            not_found=f"KV v2 mount {mount!r} not found (writing {path!r})",
            write=True,
        )
        body = response.get("data") if isinstance(response, dict) else None
        if not isinstance(body, dict) or "version" not in body:
            raise VaultError(f"write to {mount}/data/{path} returned no version number")
        return int(body["version"])

    def set_labels(
        self,
        mount: str,
        path: str,
        current: int | None,
        previous: int | None,
        pending: int | None,
    ) -> None:
        """Set the staging labels; None removes a label. Other custom metadata is preserved.

        Done as one JSON merge patch on ``<mount>/metadata/<path>``: Vault reads, merges and
        writes under its own lock, so no foreign key or metadata setting (max_versions,
        delete_version_after, cas_required) can be lost between a read and a write. The
        token needs the ``patch`` capability on that path.
        """
        mount, path = _norm(mount), _norm(path)
        for name, value in (("current", current), ("previous", previous), ("pending", pending)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"staging label {name} must be a version number >= 1")
        patch = {
            "custom_metadata": {
                LABEL_CURRENT: _label(current),
                LABEL_PREVIOUS: _label(previous),
                LABEL_PENDING: _label(pending),
            }
        }
        self.client.call(
            lambda _: self.client.request(
                "PATCH",
                f"/v1/{mount}/metadata/{path}",
                json=patch,
                content_type="application/merge-patch+json",
            ),
            op="patch metadata of",
            path=f"{mount}/metadata/{path}",
            not_found=f"KV v2 secret {path!r} not found in mount {mount!r}; labels not set",
        )

    # -- randomness -----------------------------------------------------------------------

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes from Vault's RNG (``sys/tools/random``)."""
        if not 1 <= n <= MAX_RANDOM_BYTES:
            raise ValueError(f"random_bytes: n must be between 1 and {MAX_RANDOM_BYTES}")
        response = self.client.call(
            lambda _: self.client.request(
                "POST", f"/v1/sys/tools/random/{n}", json={"format": "base64"}
            ),
            op="generate random bytes at",
            path=f"sys/tools/random/{n}",
        )
        encoded = (
            (response.get("data") or {}).get("random_bytes") if isinstance(response, dict) else None
        )
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != n:
            raise VaultError(f"sys/tools/random/{n} returned {len(raw)} bytes, expected {n}")
        return raw

    def generate_password(self, length: int = 32) -> Sensitive:
        """A password of ``length`` characters from ``[A-Za-z0-9_-]`` (6 bits each)."""
        if length < 1:
            raise ValueError("generate_password: length must be >= 1")
        raw = self.random_bytes(length)
        return Sensitive("".join(PASSWORD_ALPHABET[b & 63] for b in raw))


def _parse_labels(custom: Mapping[str, str], mount: str, path: str) -> StagingLabels:
    values: dict[str, int | None] = {}
    for key in _LABELS:
        text = custom.get(key)
        if text is None or text == "":
            values[key] = None
            continue
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1:
            raise VaultError(
                f"custom metadata {key} of {mount}/{path} is not a version number; fix or remove it"
            )
        values[key] = number
    return StagingLabels(
        current=values[LABEL_CURRENT],
        previous=values[LABEL_PREVIOUS],
        pending=values[LABEL_PENDING],
    )


def _label(value: int | None) -> str | None:
    return None if value is None else str(value)


def _norm(part: str) -> str:
    return part.strip("/")


@contextmanager
def _malformed(where: str) -> Iterator[None]:
    """A body that is JSON but not KV v2's shape is a VaultError that names the part, never a
    value (the body may hold secrets)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise VaultError(
            f"{where} answered a malformed KV v2 body ({type(exc).__name__})"
        ) from None


def _whole(value: object) -> int:
    """A version number: an integer, or its decimal text (JSON object keys)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("not a version number")
    return int(value)


def _wrap(value: object) -> Sensitive:
    if isinstance(value, str):
        return Sensitive(value)
    return Sensitive(json.dumps(value, separators=(",", ":"), sort_keys=True))


def _str_dict(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _time(value: object) -> datetime:
    parsed = _time_or_none(value)
    if parsed is None:
        return datetime.fromtimestamp(0, tz=UTC)
    return parsed


def _time_or_none(value: object) -> datetime | None:
    """RFC 3339 from Vault; "" means "not set". Nanoseconds are cut to microseconds."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[:digits][:6].ljust(6, '0')}{tail[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
