"""policies/ holds rendered examples: they must match what `vaultbridge policy render` prints."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from vaultbridge.access_policies import (
    PolicyOptions,
    ceph_script,
    credentials_from,
    kubernetes_auth_role,
    rbac_values,
    vault_policy,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CRS = [
    {
        "metadata": {"namespace": "rook-ceph", "name": "rgw-keystone"},
        "spec": {
            "source": {"mount": "secret", "path": "ceph/rgw-keystone"},
            "secret": {
                "name": "rgw-keystone",
                "extraOwners": [
                    {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "name": "my-store"}
                ],
            },
            "target": {
                "config": {"who": "client.rgw.my-store", "option": "rgw_keystone_admin_password"}
            },
        },
    },
    {
        "metadata": {"namespace": "rook-ceph", "name": "app"},
        "spec": {
            "source": {"mount": "secret", "path": "ceph/app", "field": "key"},
            "secret": {"name": "app"},
            "target": {
                "cephx": {
                    "entity": "client.app",
                    "caps": {"mon": "allow r", "osd": "allow rw pool=app"},
                }
            },
            "rolloutRestartTargets": [{"kind": "Deployment", "name": "app"}],
        },
    },
]


def test_examples_are_current() -> None:
    creds = credentials_from(CRS, "client.vaultbridge")
    options = PolicyOptions(service_account="vaultbridge", service_account_namespace="vaultbridge")
    assert (POLICIES / "vaultbridge.hcl").read_text() == vault_policy(creds, options)
    assert json.loads((POLICIES / "kubernetes-auth-role.json").read_text()) == kubernetes_auth_role(
        options
    )
    assert (POLICIES / "ceph-caps.txt").read_text() == ceph_script(creds, options)
    plurals = {"ceph.rook.io/v1/CephObjectStore": "cephobjectstores"}
    assert yaml.safe_load((POLICIES / "rbac-values.yaml").read_text()) == rbac_values(
        creds, plurals
    )
