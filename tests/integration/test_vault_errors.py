"""Failure behaviour against a real OpenBao: unreachable servers fail fast as VaultUnavailable,
and a canary secret never shows up in exceptions (with their chained causes) or log records."""

from __future__ import annotations

import logging
import socket
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.testenv.bao import OpenBaoServer, start_openbao
from vaultbridge.testenv.common import free_port
from vaultbridge.vault import (
    AppRoleAuthenticator,
    KubernetesAuthenticator,
    KvV2Source,
    TokenAuthenticator,
    VaultAuthError,
    VaultClient,
    VaultConflict,
    VaultError,
    VaultNotFound,
    VaultPermissionDenied,
    VaultUnavailable,
)

pytestmark = pytest.mark.integration

CANARY = "CANARY-" + uuid.uuid4().hex  # a value that must never leak


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
    client.sys.create_or_update_policy(
        "read-only", 'path "secret/data/*" { capabilities = ["read"] }'
    )
    client.sys.enable_auth_method("approle")
    client.write("auth/approle/role/canary", token_policies="read-only")
    return client


def kv_for(addr: str, token: str, timeout: float = 5.0) -> KvV2Source:
    return KvV2Source(VaultClient(addr, TokenAuthenticator(token), timeout=timeout))


def test_wrong_port_is_unavailable_fast() -> None:
    kv = kv_for(f"http://127.0.0.1:{free_port()}", "root")
    started = time.monotonic()
    with pytest.raises(VaultUnavailable, match="cannot connect to Vault") as err:
        kv.read("secret", "x")
    assert time.monotonic() - started < 1.0
    assert err.value.transient


def test_stopped_server_is_unavailable(tmp_path: Path) -> None:
    server = start_openbao(tmp_path)
    kv = kv_for(server.addr, server.token)
    kv.write("secret", "a", {"value": Sensitive("x")}, cas=0)
    server.stop()
    started = time.monotonic()
    with pytest.raises(VaultUnavailable):
        kv.read("secret", "a")
    with pytest.raises(VaultUnavailable):
        kv.metadata("secret", "a")
    assert time.monotonic() - started < 2.0


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        addr = f"http://127.0.0.1:{listener.getsockname()[1]}"
        kv = kv_for(addr, "root", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(VaultUnavailable, match=r"did not answer within 0.5 s"):
            kv.read("secret", "x")
        with pytest.raises(VaultUnavailable, match="may or may not have been applied"):
            kv.write("secret", "x", {"value": Sensitive(CANARY)}, cas=None)
        assert time.monotonic() - started < 3.0


def test_sealed_server_is_unavailable(tmp_path: Path) -> None:
    server = start_openbao(tmp_path)
    try:
        hvac.Client(url=server.addr, token=server.token).sys.seal()
        client = VaultClient(server.addr, TokenAuthenticator(server.token))
        with pytest.raises(VaultUnavailable, match="sealed"):
            KvV2Source(client).read("secret", "x")
        with pytest.raises(VaultUnavailable, match="sealed"):
            client.health()
    finally:
        server.stop()


def rendered(exc: BaseException) -> str:
    """Everything a log handler or error reporter could show about an exception chain."""
    parts = ["".join(traceback.format_exception(exc)), str(exc), repr(exc)]
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        parts += [str(cur), repr(cur), repr(cur.args)]
        parts += [repr(v) for v in vars(cur).values()]
        todo += [cur.__cause__, cur.__context__]
    return "\n".join(parts)


def test_canary_never_leaks(
    bao: OpenBaoServer, root: hvac.Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # root logger: hvac, urllib3, requests, vaultbridge
    for name in ("hvac", "urllib3", "requests", "vaultbridge"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    kv = kv_for(bao.addr, bao.token)
    path = f"canary/{uuid.uuid4().hex[:8]}"
    kv.write("secret", path, {"value": Sensitive(CANARY), "user": Sensitive("u")}, cas=0)
    errors: list[BaseException] = []

    def expect(kind: type[VaultError], fn: object, *args: object, **kw: object) -> None:
        with pytest.raises(kind) as info:
            fn(*args, **kw)  # type: ignore[operator]
        errors.append(info.value)

    secret = kv.read("secret", path)
    assert secret.data["value"].reveal() == CANARY
    expect(VaultConflict, kv.write, "secret", path, {"value": Sensitive(CANARY)}, cas=0)
    expect(VaultNotFound, kv.read_field, "secret", path, "password")
    expect(VaultNotFound, kv.write, "nomount", path, {"value": Sensitive(CANARY)}, cas=None)

    limited = root.auth.token.create(policies=["read-only"], ttl="1h")["auth"]["client_token"]
    expect(
        VaultPermissionDenied,
        kv_for(bao.addr, limited).write,
        "secret",
        path,
        {"value": Sensitive(CANARY)},
        cas=None,
    )
    expect(VaultAuthError, kv_for(bao.addr, CANARY).read, "secret", path)
    expect(
        VaultUnavailable,
        kv_for(f"http://127.0.0.1:{free_port()}", CANARY).write,
        "secret",
        path,
        {"value": Sensitive(CANARY)},
        cas=None,
    )

    role_id = root.read("auth/approle/role/canary/role-id")["data"]["role_id"]
    approle = AppRoleAuthenticator(role_id, secret_id=CANARY, role_name="canary")
    expect(VaultAuthError, KvV2Source(VaultClient(bao.addr, approle)).read, "secret", path)

    jwt = tmp_path / "jwt"
    jwt.write_text(CANARY)
    kube = KubernetesAuthenticator("canary", jwt_path=jwt)
    expect(VaultAuthError, KvV2Source(VaultClient(bao.addr, kube)).read, "secret", path)

    assert len(errors) == 8
    for exc in errors:
        assert CANARY not in rendered(exc), type(exc)
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)
    assert CANARY not in caplog.text
    assert CANARY not in repr(secret) and CANARY not in str(secret.data)
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the loggers were on


def test_tls_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    server = start_openbao(tmp_path, tls=True)
    try:
        assert server.addr.startswith("https://") and server.ca_cert is not None
        with VaultClient(server.addr, TokenAuthenticator(server.token), cacert=server.ca_cert) as c:
            kv = KvV2Source(c)
            assert kv.write("secret", "tls/x", {"value": Sensitive(CANARY)}, cas=0) == 1
            assert kv.read("secret", "tls/x").data == {"value": Sensitive(CANARY)}
            kv.set_labels("secret", "tls/x", current=1, previous=None, pending=None)
            assert kv.metadata("secret", "tls/x").labels.current == 1
        # the dev CA is not among the system's: without it the certificate is refused
        with VaultClient(server.addr, TokenAuthenticator(server.token)) as client:
            with pytest.raises(VaultError, match="TLS handshake with Vault") as err:
                KvV2Source(client).read("secret", "tls/x")
            assert CANARY not in "".join(traceback.format_exception(err.value))
    finally:
        server.stop()
