"""Vault-triggered rotation pushed by a real OpenBao's audit device (the http device of
OpenBao 2.5 and later), with a file device beside it: a KV write reaches Ceph through the
push; with vaultbridge stopped OpenBao keeps serving, and the write it missed is picked up when
it is back (its catch-up with Vault at the start of a term, else the safety poll within its
period)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from controller_helpers import (
    ControllerProcess,
    at_version,
    config_key_spec,
    create_cr,
    http,
    labelled,
    unique,
    wait_for,
)
from kubernetes import client as k8s

from vaultbridge.testenv.bao import AuditDevices, OpenBaoServer, start_openbao
from vaultbridge.testenv.common import free_port
from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

AUDIT_TOKEN = "audit-token-4e2b9d17"
SAFETY_PERIOD = 6.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def kv_put(bao: OpenBaoServer, path: str, value: str) -> int:
    request = urllib.request.Request(
        f"{bao.addr}/v1/secret/data/{path}",
        data=json.dumps({"data": {"value": value}}).encode(),
        headers={"X-Vault-Token": bao.token, "Content-Type": "application/json"},
        method="POST",
    )
    with _OPENER.open(request, timeout=10) as reply:
        return int(json.load(reply)["data"]["version"])


def controller_on(
    testenv: Environment, ns: str, tmp_path: Path, bao: OpenBaoServer, port: int
) -> ControllerProcess:
    controller = ControllerProcess(
        testenv,
        ns,
        tmp_path,
        VAULTBRIDGE_HTTP__PORT=str(port),
        VAULTBRIDGE_VAULT__ADDR=bao.addr,
        VAULTBRIDGE_VAULT__TOKEN=bao.token,
        VAULTBRIDGE_TRIGGERS__AUDIT_TOKEN=AUDIT_TOKEN,
        VAULTBRIDGE_TRIGGERS__POLL_INTERVAL="1",
        VAULTBRIDGE_TRIGGERS__SAFETY_POLL_PERIOD=str(SAFETY_PERIOD),
    )
    controller.port = port
    controller.wait_leader()
    return controller


def test_a_write_is_pushed_by_the_audit_device_and_a_missed_one_is_polled(
    testenv: Environment, api: k8s.ApiClient, ns: str, tmp_path: Path
) -> None:
    port = free_port()
    token_file = tmp_path / "audit-token"
    token_file.write_text(f"Bearer {AUDIT_TOKEN}")
    token_file.chmod(0o600)
    devices = AuditDevices(f"http://127.0.0.1:{port}/v1/audit", token_file)
    bao = start_openbao(tmp_path / "bao", audit=devices)
    controllers: list[ControllerProcess] = []
    try:
        name, path, key = unique("audit"), unique("au"), f"vaultbridge-test/{unique('a')}"
        v1 = kv_put(bao, path, "pushed-1")
        controllers.append(controller_on(testenv, ns, tmp_path, bao, port))
        controller = controllers[-1]
        create_cr(
            api,
            ns,
            name,
            config_key_spec(path, name, key),
        )
        wait_for(lambda: at_version(api, ns, name, v1), "first version promoted")

        # pushed: the audit entry of the write queues the credential
        began = time.monotonic()
        v2 = kv_put(bao, path, "pushed-2")
        wait_for(lambda: at_version(api, ns, name, v2), "pushed version promoted", interval=0.02)
        pushed_in = time.monotonic() - began

        def counted(name: str, **labels: str) -> float:
            return labelled(controller.metrics(), name, **labels)

        wait_for(
            lambda: counted("vaultbridge_audit_entries_total", result="queued") >= 1,
            "the write's audit entry queued its credential",
            timeout=30,
        )
        print(f"Vault write -> promoted through the audit device: {pushed_in * 1000:.0f} ms")

        # a sender without the token is refused and counted
        status, body = http("POST", controller.url + "/v1/audit", {"type": "response"}, token=None)
        assert status == 401, body
        wait_for(
            lambda: counted("vaultbridge_audit_rejected_total", reason="token") == 1,
            "the refused sender counted",
            timeout=30,
        )
        assert "pushed-" not in controller.output()

        # vaultbridge stopped: its device fails, the file device keeps OpenBao serving
        controller.stop()
        v3 = kv_put(bao, path, "missed-3")
        assert f"secret/data/{path}" in (tmp_path / "bao" / "audit.log").read_text()
        controllers.append(controller_on(testenv, ns, tmp_path, bao, port))
        restarted = time.monotonic()
        wait_for(lambda: at_version(api, ns, name, v3), "the missed write picked up", timeout=60)
        print(f"missed write picked up {time.monotonic() - restarted:.1f} s after the restart")

        # found by the new term's catch-up with Vault (or, were it later, by the safety poll)
        def caught() -> bool:
            text = controllers[-1].metrics()
            count = "vaultbridge_propagation_latency_seconds_count"
            return sum(labelled(text, count, trigger=t) for t in ("resync", "poll")) >= 1

        wait_for(caught, "the missed write counted as caught up")
        assert testenv.ceph.ceph("config-key", "get", key).strip() == "missed-3"
    finally:
        for controller in controllers:
            controller.stop()
        bao.stop()
