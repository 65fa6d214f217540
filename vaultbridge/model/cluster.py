"""Which Ceph cluster a credential lives in (``spec.cluster``), and the pure parsing of the
objects a cluster's connection is read from: Rook's mon endpoints, a ``ceph.conf``, a keyring
and the Secret layouts (docs/clusters.md). Nothing here reads Kubernetes or talks to Ceph.

A :class:`ClusterRef` has a stable ``key`` (what the journal, ``status.cluster``, the metrics'
``cluster`` label and the printer column hold); ``None`` is the default cluster, the one the
``VAULTBRIDGE_CEPH__*`` settings name.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from vaultbridge.model.sensitive import Sensitive

DEFAULT_CLUSTER: Final = "default"
ROOK_ENDPOINTS: Final = "rook-ceph-mon-endpoints"
ROOK_ENDPOINTS_KEY: Final = "data"
CONF_KEY: Final = "ceph.conf"
KEYRING_KEY: Final = "keyring"
FSID_KEY: Final = "fsid"
USER_KEY: Final = "ceph-username"
SECRET_KEY: Final = "ceph-secret"
ADMIN_SECRET_KEY: Final = "admin-secret"
# options of a ceph.conf from a ConfigMap that would put a secret, or a path of this process,
# into the connection: refused, the key belongs in the Secret
_REFUSED_OPTIONS: Final = frozenset({"key", "keyfile", "keyring"})
_MON_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")
_FSID_RE: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_ENTITY_RE: Final = re.compile(r"client\.[A-Za-z0-9_.-]+")
_KEY_RE: Final = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")

ClusterKind = Literal["rook", "external"]


class ClusterConfigError(ValueError):
    """An object a cluster's connection is read from is missing or malformed. The message
    names the object and the problem, never a value of a Secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClusterRef:
    """``spec.cluster``: a Rook cluster (``rook``: the mon endpoints ConfigMap Rook keeps in
    ``namespace``, and the Secret ``secret`` there) or an external one (``external``: a
    ConfigMap with ``ceph.conf`` and a Secret with ``keyring``, both in ``namespace``)."""

    kind: ClusterKind
    namespace: str
    config_map: str  # rook: the mon endpoints (rook-ceph-mon-endpoints); external: ceph.conf
    secret: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.config_map}/{self.secret}"

    def __str__(self) -> str:
        return self.key

    @property
    def objects(self) -> tuple[tuple[str, str, str], ...]:
        """(kind, namespace, name) of every object the connection is read from."""
        return (
            ("ConfigMap", self.namespace, self.config_map),
            ("Secret", self.namespace, self.secret),
        )

    @classmethod
    def from_key(cls, key: str | None) -> ClusterRef | None:
        """The ref a ``key`` names (None: the default cluster). ValueError if it names none."""
        if key is None or key == DEFAULT_CLUSTER:
            return None
        kind, _, rest = key.partition(":")
        parts = rest.split("/")
        if kind not in ("rook", "external") or len(parts) != 3 or not all(parts):
            raise ValueError(f"{key!r} is not a cluster key")
        return cls(kind, parts[0], parts[1], parts[2])  # type: ignore[arg-type]


def cluster_key(ref: ClusterRef | None) -> str:
    return DEFAULT_CLUSTER if ref is None else ref.key


# -- what a connection is made from -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterConnectionSpec:
    """Everything a librados connection to one cluster needs, read from its objects. ``key``
    stays wrapped; ``options`` are plain ceph options (``mon_host`` among them)."""

    mon_host: str
    user: str
    key: Sensitive
    fsid: str | None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def endpoints(self) -> str:
        """What identifies where the mons are (compared to tell a move)."""
        return self.mon_host


def parse_rook_endpoints(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """Rook's ``data`` of ``rook-ceph-mon-endpoints``: ``a=10.0.0.1:6789,b=10.0.0.2:6789``
    (IPv6 in brackets: ``a=[fd00::1]:3300``). Returns (name, "ip:port") pairs."""
    mons: list[tuple[str, str]] = []
    seen: set[str] = set()
    if not text.strip():
        raise ClusterConfigError("MonEndpointsMalformed", f"{where}: no mon endpoints (empty)")
    for index, item in enumerate(text.split(",")):
        entry = item.strip()
        name, sep, address = entry.partition("=")
        if not sep or not _MON_NAME_RE.fullmatch(name):
            raise ClusterConfigError(
                "MonEndpointsMalformed",
                f"{where}: entry {index + 1} is not NAME=ADDRESS:PORT (Rook's format, "
                "e.g. a=10.0.0.1:6789)",
            )
        _check_address(address, f"{where}: entry {index + 1} (mon {name})")
        if name in seen:
            raise ClusterConfigError(
                "MonEndpointsMalformed", f"{where}: mon {name} is listed twice"
            )
        seen.add(name)
        mons.append((name, address))
    return tuple(mons)


def _check_address(address: str, where: str) -> None:
    host, port = _split_host_port(address)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ClusterConfigError(
            "MonEndpointsMalformed", f"{where}: {address!r} is not IP:PORT"
        ) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterConfigError(
            "MonEndpointsMalformed", f"{where}: port of {address!r} is not 1-65535"
        )


def _split_host_port(address: str) -> tuple[str, str]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, _, port = address.rpartition(":")
    return host, port


def parse_rook_secret(data: Mapping[str, Sensitive], where: str) -> tuple[str, str, Sensitive]:
    """(fsid, user, key) from a Rook-layout Secret: ``fsid``, and ``ceph-username`` +
    ``ceph-secret`` (a dedicated entity), else ``admin-secret`` (client.admin, as Rook's own
    ``rook-ceph-mon`` Secret holds it)."""
    fsid = _text(data, FSID_KEY, where, required=True)
    assert fsid is not None
    if not _FSID_RE.fullmatch(fsid):
        raise ClusterConfigError("ClusterSecretMalformed", f"{where}: key fsid is not a UUID")
    user = _text(data, USER_KEY, where, required=False)
    if user is not None:
        if SECRET_KEY not in data:
            raise ClusterConfigError(
                "ClusterSecretMalformed", f"{where}: has {USER_KEY} but no {SECRET_KEY}"
            )
        key = data[SECRET_KEY]
        user = user if user.startswith("client.") else f"client.{user}"
    elif ADMIN_SECRET_KEY in data:
        user, key = "client.admin", data[ADMIN_SECRET_KEY]
    else:
        raise ClusterConfigError(
            "ClusterSecretMalformed",
            f"{where}: needs {USER_KEY} and {SECRET_KEY} (or Rook's {ADMIN_SECRET_KEY})",
        )
    if not _ENTITY_RE.fullmatch(user):
        raise ClusterConfigError(
            "ClusterSecretMalformed", f"{where}: {USER_KEY} {user!r} is not a client entity"
        )
    _check_key(key, f"{where}: {SECRET_KEY if USER_KEY in data else ADMIN_SECRET_KEY}")
    return fsid, user, key


def parse_keyring(data: Mapping[str, Sensitive], where: str) -> tuple[str, Sensitive]:
    """(user, key) from the ``keyring`` of an external cluster's Secret: the first
    ``[client.NAME]`` section with a ``key``."""
    if KEYRING_KEY not in data:
        raise ClusterConfigError("ClusterSecretMalformed", f"{where}: has no key {KEYRING_KEY}")
    entity: str | None = None
    for raw in data[KEYRING_KEY].reveal().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            entity = line[1:-1].strip()
            continue
        name, sep, value = line.partition("=")
        if sep and name.strip() == "key" and entity is not None:
            if not _ENTITY_RE.fullmatch(entity):
                raise ClusterConfigError(
                    "ClusterSecretMalformed",
                    f"{where}: keyring section [{entity}] is not a client entity",
                )
            key = Sensitive(value.strip())
            _check_key(key, f"{where}: keyring [{entity}]")
            return entity, key
    raise ClusterConfigError(
        "ClusterSecretMalformed",
        f"{where}: keyring holds no [client.NAME] section with a key",
    )


def parse_ceph_conf(text: str, where: str) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
    """(mon_host, fsid, other options) from a ``ceph.conf``: its ``[global]`` and ``[client]``
    sections, names normalised to underscores. A key or keyring in it is refused."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, inline_comment_prefixes=("#", ";")
    )
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClusterConfigError(
            "CephConfMalformed", f"{where}: not a ceph.conf ({first[:120]})"
        ) from None
    options: dict[str, str] = {}
    for section in ("global", "client"):
        if not parser.has_section(section):
            continue
        for name, value in parser.items(section):
            normal = "_".join(name.replace("-", "_").split())
            if normal in _REFUSED_OPTIONS:
                raise ClusterConfigError(
                    "CephConfMalformed",
                    f"{where}: [{section}] sets {normal}; the key belongs in the Secret",
                )
            options[normal] = value.strip()
    mon_host = options.pop("mon_host", "")
    if not mon_host:
        raise ClusterConfigError("CephConfMalformed", f"{where}: [global] has no mon_host")
    fsid = options.pop("fsid", None)
    if fsid is not None and not _FSID_RE.fullmatch(fsid):
        raise ClusterConfigError("CephConfMalformed", f"{where}: fsid is not a UUID")
    return mon_host, fsid, tuple(sorted(options.items()))


def _text(data: Mapping[str, Sensitive], name: str, where: str, *, required: bool) -> str | None:
    if name not in data:
        if required:
            raise ClusterConfigError("ClusterSecretMalformed", f"{where}: has no key {name}")
        return None
    value = data[name].reveal().strip()
    if not value:
        raise ClusterConfigError("ClusterSecretMalformed", f"{where}: key {name} is empty")
    return value


def _check_key(key: Sensitive, where: str) -> None:
    if not _KEY_RE.fullmatch(key.reveal().strip()):
        raise ClusterConfigError("ClusterSecretMalformed", f"{where} is not a cephx key")


MSGR2_PORT: Final = "3300"


def rook_mon_host(mons: tuple[tuple[str, str], ...]) -> str:
    """``mon_host`` for Rook's listed mons. Rook lists msgr2 mons on port 3300 and msgr1 mons
    on any other (6789 by default); the protocol is spelled out, because librados reads a bare
    address on another port as msgr2 and then waits instead of failing on a refused key."""
    return ",".join(
        f"{'v2' if _split_host_port(address)[1] == MSGR2_PORT else 'v1'}:{address}"
        for _, address in mons
    )
