"""Authentication against a real OpenBao: static token, AppRole, Vault Agent token sink,
renewal before expiry, re-login after a 403 from an expired token."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.testenv.bao import OpenBaoServer, start_openbao
from vaultbridge.vault import (
    AgentAuthenticator,
    AppRoleAuthenticator,
    KvV2Source,
    TokenAuthenticator,
    VaultAuthError,
    VaultClient,
    VaultConfigError,
    VaultPermissionDenied,
    make_authenticator,
)

pytestmark = pytest.mark.integration

POLICY = """
path "secret/data/allowed/*" { capabilities = ["read", "create", "update"] }
path "secret/metadata/allowed/*" { capabilities = ["read", "patch"] }
"""


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def root(bao: OpenBaoServer) -> hvac.Client:
    client = hvac.Client(url=bao.addr, token=bao.token)
    client.sys.create_or_update_policy("vaultbridge-test", POLICY)
    client.sys.enable_auth_method("approle")
    client.secrets.kv.v2.create_or_update_secret(
        "allowed/rgw", {"value": "ok"}, mount_point="secret"
    )
    client.secrets.kv.v2.create_or_update_secret(
        "forbidden/rgw", {"value": "no"}, mount_point="secret"
    )
    return client


def approle(root: hvac.Client, **role: object) -> tuple[str, str]:
    name = f"r{uuid.uuid4().hex[:8]}"
    root.write(f"auth/approle/role/{name}", token_policies="vaultbridge-test", **role)
    role_id = root.read(f"auth/approle/role/{name}/role-id")["data"]["role_id"]
    secret_id = root.write(f"auth/approle/role/{name}/secret-id")["data"]["secret_id"]
    return role_id, secret_id


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_auth_bad_token(bao: OpenBaoServer, root: hvac.Client) -> None:
    with (
        VaultClient(bao.addr, TokenAuthenticator("not-a-token")) as client,
        pytest.raises(VaultAuthError) as err,
    ):
        KvV2Source(client).read("secret", "allowed/rgw")
    text = str(err.value)
    assert "token auth" in text and "secret/data/allowed/rgw" in text
    assert "not-a-token" not in text
    assert err.value.method == "token"


def test_token_auth_limited_token_gets_permission_denied(
    bao: OpenBaoServer, root: hvac.Client
) -> None:
    token = root.auth.token.create(policies=["vaultbridge-test"], ttl="1h")["auth"]["client_token"]
    with VaultClient(bao.addr, TokenAuthenticator(token)) as client:
        kv = KvV2Source(client)
        assert kv.read_field("secret", "allowed/rgw", "value").reveal() == "ok"
        with pytest.raises(VaultPermissionDenied) as err:
            kv.read("secret", "forbidden/rgw")
        assert err.value.path == "secret/data/forbidden/rgw"
        assert "secret/data/forbidden/rgw" in str(err.value)


def test_approle_login_allowed_and_denied(
    bao: OpenBaoServer, root: hvac.Client, tmp_path: Path
) -> None:
    role_id, secret_id = approle(root)
    auth = AppRoleAuthenticator(role_id, secret_id=secret_id, role_name="vaultbridge")
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        assert kv.read_field("secret", "allowed/rgw", "value").reveal() == "ok"
        with pytest.raises(VaultPermissionDenied, match="secret/data/forbidden/rgw"):
            kv.read("secret", "forbidden/rgw")
        caps = client.capabilities(["secret/data/allowed/rgw", "secret/data/forbidden/rgw"])
        assert caps == {
            "secret/data/allowed/rgw": ["create", "read", "update"],
            "secret/data/forbidden/rgw": ["deny"],
        }

    # secret_id from a file, via the settings factory
    sid_file = tmp_path / "secret-id"
    sid_file.write_text(secret_id + "\n")
    auth2 = make_authenticator("approle", approle_role_id=role_id, approle_secret_id_file=sid_file)
    with VaultClient(bao.addr, auth2) as client:
        assert KvV2Source(client).read("secret", "allowed/rgw").version == 1


def test_approle_bad_secret_id(bao: OpenBaoServer, root: hvac.Client) -> None:
    role_id, _ = approle(root)
    wrong = "c0ffee00-dead-beef-0000-" + uuid.uuid4().hex[:12]
    auth = AppRoleAuthenticator(role_id, secret_id=wrong, role_name="rgw-sync")
    with VaultClient(bao.addr, auth) as client, pytest.raises(VaultAuthError) as err:
        client.capabilities(["secret/data/allowed/rgw"])
    text = str(err.value)
    assert "approle" in text and "rgw-sync" in text and "auth/approle/login" in text
    assert wrong not in text and role_id not in text
    assert err.value.method == "approle" and err.value.role == "rgw-sync"


def test_renewal_at_two_thirds_of_ttl(bao: OpenBaoServer, root: hvac.Client) -> None:
    role_id, secret_id = approle(root, token_ttl="60s", token_max_ttl="1h")
    clock = ManualClock()
    auth = AppRoleAuthenticator(role_id, secret_id=secret_id, clock=clock)
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        kv.read("secret", "allowed/rgw")
        first = auth.token()
        clock.now += 30  # < 2/3 of 60 s: nothing happens
        kv.read("secret", "allowed/rgw")
        assert auth.token() == first
        clock.now += 15  # 45 s > 40 s: renewed (same token, fresh lease)
        kv.read("secret", "allowed/rgw")
        assert auth.token() == first
        ttl = root.auth.token.lookup(first.reveal())["data"]["ttl"]
        assert ttl > 55


def test_non_renewable_token_is_replaced_by_a_new_login(
    bao: OpenBaoServer, root: hvac.Client
) -> None:
    role_id, secret_id = approle(root, token_ttl="60s", token_type="batch")
    clock = ManualClock()
    auth = AppRoleAuthenticator(role_id, secret_id=secret_id, clock=clock)
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        kv.read("secret", "allowed/rgw")
        first = auth.token()
        clock.now += 41
        kv.read("secret", "allowed/rgw")
        assert auth.token() != first


def test_expired_token_403_triggers_one_relogin(bao: OpenBaoServer, root: hvac.Client) -> None:
    role_id, secret_id = approle(root, token_ttl="1s", token_max_ttl="1s")
    auth = AppRoleAuthenticator(role_id, secret_id=secret_id, clock=ManualClock())  # frozen
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        kv.read("secret", "allowed/rgw")
        first = auth.token()
        time.sleep(2.2)  # the token really expires in Vault; our clock does not notice
        assert kv.read_field("secret", "allowed/rgw", "value").reveal() == "ok"
        assert auth.token() != first
        # a policy denial with a valid token is not retried as an auth problem
        with pytest.raises(VaultPermissionDenied):
            kv.read("secret", "forbidden/rgw")


def write_sink(sink: Path, token: str) -> None:
    """Like Vault Agent: write a temp file, rename it over the sink."""
    tmp = sink.with_name(sink.name + ".tmp")
    tmp.write_text(token)
    os.replace(tmp, sink)


def test_agent_token_sink(bao: OpenBaoServer, root: hvac.Client, tmp_path: Path) -> None:
    sink = tmp_path / "agent" / "token"
    auth = make_authenticator("agent", token_file=sink)
    assert isinstance(auth, AgentAuthenticator)
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        with pytest.raises(VaultAuthError, match=r"token sink .* not readable"):
            kv.read("secret", "allowed/rgw")
        sink.parent.mkdir()
        sink.write_text("")
        with pytest.raises(VaultAuthError, match="is empty"):
            kv.read("secret", "allowed/rgw")

        limited = root.auth.token.create(policies=["vaultbridge-test"], ttl="1h")["auth"]
        write_sink(sink, limited["client_token"])
        assert kv.read_field("secret", "allowed/rgw", "value").reveal() == "ok"
        with pytest.raises(VaultPermissionDenied):
            kv.read("secret", "forbidden/rgw")

        # the agent re-authenticated: a new token in the file is picked up at the next call
        write_sink(
            sink, root.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
        )
        assert kv.read_field("secret", "forbidden/rgw", "value").reveal() == "no"

        # the old token is revoked and the sink holds a dead one: a clear auth error
        root.auth.token.revoke(auth.token().reveal())
        with pytest.raises(VaultAuthError, match="agent auth"):
            kv.read("secret", "allowed/rgw")


def test_agent_sink_rewritten_in_place_same_size_is_picked_up_after_403(
    bao: OpenBaoServer, root: hvac.Client, tmp_path: Path
) -> None:
    sink = tmp_path / "token"
    t1 = root.auth.token.create(policies=["vaultbridge-test"], ttl="1h")["auth"]["client_token"]
    t2 = root.auth.token.create(policies=["vaultbridge-test"], ttl="1h")["auth"]["client_token"]
    assert len(t1) == len(t2)
    sink.write_text(t1)
    st = sink.stat()
    with VaultClient(bao.addr, AgentAuthenticator(sink)) as client:
        kv = KvV2Source(client)
        kv.read("secret", "allowed/rgw")
        root.auth.token.revoke(t1)
        sink.write_text(t2)
        os.utime(sink, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, inode and mtime
        assert kv.read_field("secret", "allowed/rgw", "value").reveal() == "ok"


def test_factory_config_errors() -> None:
    with pytest.raises(VaultConfigError, match="VAULTBRIDGE_VAULT__TOKEN"):
        make_authenticator("token")
    with pytest.raises(VaultConfigError, match="VAULTBRIDGE_VAULT__ROLE"):
        make_authenticator("kubernetes")
    with pytest.raises(VaultConfigError, match="unknown vault auth method"):
        make_authenticator("ldap")
    with pytest.raises(VaultConfigError, match="secret_id"):
        make_authenticator("approle", approle_role_id=Sensitive("x"))
