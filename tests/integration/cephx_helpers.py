"""Helpers for the cephx rotation tests: specs, Secret reads, fresh-connection auth checks."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client as k8s
from rotation_helpers import read_secret, unique

from vaultbridge.ceph import CephConnection, CephError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.testenv.env import Environment


def cephx_spec(
    path: str,
    entity: str,
    caps: dict[str, str] | None = None,
    *,
    generate: bool = True,
    **cephx: Any,
) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": path, "field": "key"},
        "secret": {"name": "cred"},
        "target": {"cephx": {"entity": entity, "caps": caps or {"mon": "allow r"}, **cephx}},
        "generate": generate,
    }


def new_entity() -> str:
    return f"client.{unique('app')}"


def secret_cephx(api: k8s.ApiClient, ns: str, name: str = "cred") -> dict[str, str]:
    secret = read_secret(api, ns, name)
    assert secret is not None and secret.data
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items()}


def can_auth(env: Environment, entity: str, key: str, timeout: float = 3.0) -> bool:
    """A fresh librados connection as ``entity`` with ``key``: does `mon stat` work?"""
    return authenticates(str(env.ceph.conf), entity, key, timeout)


def authenticates(conf: str, entity: str, key: str, timeout: float = 3.0) -> bool:
    """:func:`can_auth` against the cluster of ``conf``."""
    conn = CephConnection(conf, entity, keyring="", timeout=timeout, key=Sensitive(key), quiet=True)
    try:
        conn.mon_command({"prefix": "mon stat"})
        return True
    except CephError:
        return False
    finally:
        conn.close()


def entities(env: Environment, prefix: str) -> list[str]:
    import json

    dump = json.loads(env.ceph.ceph("auth", "ls", "--format", "json"))
    return sorted(row["entity"] for row in dump["auth_dump"] if row["entity"].startswith(prefix))
