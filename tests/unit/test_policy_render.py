"""Rendering the Vault, Kubernetes and Ceph policies from parsed CredentialRotations (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from vaultbridge.access_policies import (
    PolicyError,
    PolicyOptions,
    ceph_caps,
    ceph_grants,
    credentials_from,
    kubernetes_auth_role,
    rbac_values,
    render_all,
    render_text,
    vault_paths,
    vault_policy,
)


def cr(name: str, spec: dict[str, Any], namespace: str = "rook-ceph") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


RGW = cr(
    "rgw",
    {
        "source": {"mount": "secret", "path": "ceph/rgw"},
        "secret": {
            "name": "rgw",
            "extraOwners": [
                {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "name": "store"}
            ],
        },
        "target": {"config": {"who": "client.rgw.store", "option": "rgw_keystone_admin_password"}},
    },
)
DASH = cr(
    "dash",
    {
        "source": {"mount": "kv", "path": "ceph/dashboard"},
        "secret": {"name": "dash"},
        "target": {"configKey": {"key": "mgr/dashboard/secret"}},
        "generate": True,
    },
    namespace="apps",
)
APP = cr(
    "app",
    {
        "source": {"mount": "secret", "path": "ceph/app"},
        "secret": {"name": "app"},
        "target": {"cephx": {"entity": "client.app", "caps": {"mon": "allow r"}}},
    },
    namespace="apps",
)
LOCAL = cr(
    "local",
    {"secret": {"name": "local"}, "target": {"configKey": {"key": "mgr/x/local"}}},
)
OPTIONS = PolicyOptions(service_account="vb", service_account_namespace="vaultbridge")


def test_vault_policy_grants_exactly_the_sources() -> None:
    creds = credentials_from([RGW, DASH, APP, LOCAL], "client.vaultbridge")
    paths = vault_paths(creds, OPTIONS)
    assert paths == {
        "kv/data/ceph/dashboard": ["create", "read", "update"],  # generate: writes versions
        "kv/metadata/ceph/dashboard": ["patch", "read"],
        "secret/data/ceph/app": ["create", "read", "update"],  # cephx generates by default
        "secret/metadata/ceph/app": ["patch", "read"],
        "secret/data/ceph/rgw": ["read"],
        "secret/metadata/ceph/rgw": ["patch", "read"],
        "sys/tools/random/*": ["update"],
        "auth/token/lookup-self": ["read"],
        "auth/token/renew-self": ["update"],
        "sys/capabilities-self": ["update"],
    }
    hcl = vault_policy(creds, OPTIONS)
    assert 'path "secret/data/ceph/rgw" {\n  capabilities = ["read"]\n}' in hcl
    assert "credential source of rook-ceph/rgw" in hcl
    assert "*" not in hcl.replace('"sys/tools/random/*"', "")  # no other glob


def test_vault_policy_without_generation_has_no_random_and_no_writes() -> None:
    creds = credentials_from([RGW], "client.vaultbridge")
    paths = vault_paths(creds, OPTIONS)
    assert "sys/tools/random/*" not in paths
    assert paths["secret/data/ceph/rgw"] == ["read"]


def test_keyring_source_is_readable() -> None:
    options = PolicyOptions(keyring_source=("secret", "vaultbridge/ceph-keyring"))
    paths = vault_paths([], options)
    assert paths["secret/data/vaultbridge/ceph-keyring"] == ["read"]
    assert "the keyring of client.vaultbridge" in vault_policy([], options)


def test_kubernetes_role_binds_the_service_account_to_the_policy_only() -> None:
    role = kubernetes_auth_role(OPTIONS)
    assert role["bound_service_account_names"] == ["vb"]
    assert role["bound_service_account_namespaces"] == ["vaultbridge"]
    assert role["token_policies"] == ["vaultbridge"]
    assert role["token_no_default_policy"] is True
    assert "audience" not in role
    assert kubernetes_auth_role(PolicyOptions(audience="vault"))["audience"] == "vault"


def test_ceph_caps_are_scoped_commands() -> None:
    creds = credentials_from([RGW, DASH, APP, LOCAL], "client.vaultbridge")
    grants = ceph_grants(creds)
    assert (
        'allow command "config set" with who="client.rgw.store" '
        'name="rgw_keystone_admin_password"' in grants
    )
    assert (
        'allow command "config rm" with who="client.rgw.store" '
        'name="rgw_keystone_admin_password"' in grants
    )
    assert 'allow command "config help" with key="rgw_keystone_admin_password"' in grants
    assert 'allow command "config dump"' in grants
    for command in ("get", "set", "rm", "exists"):
        assert f'allow command "config-key {command}" with key="mgr/dashboard/secret"' in grants
        assert f'allow command "config-key {command}" with key="mgr/x/local"' in grants
    for command in ("get", "add", "caps", "rm"):
        assert f'allow command "auth {command}" with entity prefix "client.app."' in grants
    # the base entity itself: read (adoption) and removed (retired after adoption), no more
    assert 'allow command "auth get" with entity="client.app"' in grants
    assert 'allow command "auth rm" with entity="client.app"' in grants
    assert 'allow command "auth add" with entity="client.app"' not in grants
    assert not any("auth import" in g or "auth ls" in g for g in grants)
    assert all(g.startswith('allow command "') for g in grants)  # never a blanket allow
    assert len(grants) == len(set(grants))
    caps = ceph_caps(creds)
    assert list(caps) == ["mon"]


def test_ceph_caps_in_place_is_exact_and_warned() -> None:
    spec = json.loads(json.dumps(APP))
    spec["spec"]["target"]["cephx"]["strategy"] = "in-place"
    creds = credentials_from([spec], "client.vaultbridge")
    assert 'allow command "auth get" with entity="client.app"' in ceph_grants(creds)
    text = render_text("ceph", creds, OPTIONS)
    assert "WARNING: apps/app" in text and "auth import" in text
    assert render_all(creds, OPTIONS)["ceph"]["inPlaceNeedsAdmin"] == ["apps/app"]


def test_no_config_targets_no_config_dump() -> None:
    creds = credentials_from([DASH], "client.vaultbridge")
    assert 'allow command "config dump"' not in ceph_grants(creds)


def test_rbac_values() -> None:
    creds = credentials_from([RGW, DASH], "client.vaultbridge")
    values = rbac_values(creds, {"ceph.rook.io/v1/CephObjectStore": "cephobjectstores"})
    assert values == {
        "watchNamespaces": ["apps", "rook-ceph"],
        "rbac": {
            "extraOwnerRules": [{"apiGroups": ["ceph.rook.io"], "resources": ["cephobjectstores"]}],
            "rolloutRestartRules": [],
        },
    }


def test_rbac_values_name_the_rollout_restart_targets() -> None:
    rolled = json.loads(json.dumps(RGW))
    rolled["spec"]["rolloutRestartTargets"] = [
        {"kind": "Deployment", "name": "web"},
        {"kind": "StatefulSet", "name": "db"},
    ]
    other = json.loads(json.dumps(DASH))
    other["spec"]["rolloutRestartTargets"] = [{"kind": "Deployment", "name": "api"}]
    values = rbac_values(credentials_from([rolled, other], "client.vaultbridge"), {})
    assert values["rbac"]["rolloutRestartRules"] == [
        {"resources": ["deployments"], "resourceNames": ["api", "web"]},
        {"resources": ["statefulsets"], "resourceNames": ["db"]},
    ]


@pytest.mark.parametrize(
    ("spec_patch", "expected"),
    [
        ({"source": {"mount": "secret", "path": "ceph/*"}}, "spec.source.path: 'ceph/*'"),
        ({"source": {"mount": "secret", "path": "ceph/+/x"}}, "policy globs"),
        (
            {"target": {"config": {"who": 'client.rgw" name="x', "option": "rgw_x"}}},
            "spec.target.config.who",
        ),
        ({"target": {"config": {"who": "client.rgw", "option": "rgw x"}}}, "not a Ceph option"),
        ({"target": {"configKey": {"key": "a b"}}}, "spec.target.configKey.key"),
        (
            {"target": {"cephx": {"entity": "client.vaultbridge", "caps": {}}}},
            "its own entity",
        ),
        ({"target": {"cephx": {"entity": "client.admin", "caps": {}}}}, "its own entity"),
        (
            {"target": {"config": {"who": "a", "option": "b"}, "configKey": {"key": "k"}}},
            "exactly one of config, configKey, cephx",
        ),
    ],
)
def test_invalid_targets_name_the_cr_and_the_problem(
    spec_patch: dict[str, Any], expected: str
) -> None:
    bad = json.loads(json.dumps(RGW))
    bad["metadata"]["name"] = "bad"
    bad["spec"].update(spec_patch)
    with pytest.raises(PolicyError) as err:
        credentials_from([RGW, bad], "client.vaultbridge")
    assert len(err.value.problems) >= 1
    assert all(p.startswith("CredentialRotation rook-ceph/bad: ") for p in err.value.problems)
    assert expected in str(err.value)


def test_render_all_text_has_every_section() -> None:
    creds = credentials_from([RGW, APP], "client.vaultbridge")
    text = render_text("all", creds, OPTIONS)
    for header in ("Vault policy", "Vault Kubernetes auth role", "cephx caps", "Helm values"):
        assert f"#### {header}" in text
    json.loads(render_text("kubernetes", creds, OPTIONS))
    assert "ceph auth get-or-create client.vaultbridge mon '" in render_text("ceph", creds, OPTIONS)


def test_cli_rejects_bad_option_values() -> None:
    from vaultbridge.cli import main

    result = CliRunner().invoke(main, ["policy", "render", "--ceph-user", "admin"])
    assert result.exit_code == 2
    assert "not a client entity" in result.output
    result = CliRunner().invoke(main, ["policy", "render", "--keyring-from", "nopath"])
    assert result.exit_code == 2
    assert "MOUNT/PATH" in result.output
