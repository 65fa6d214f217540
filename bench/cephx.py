"""cephx rotation end to end: p50/p99 over 100 alternate rotations of one credential.

Per rotation (``Engine.rotate``): 16 random bytes from Vault -> new cephx key -> Vault version N+1
(check-and-set) -> journal -> ``auth add <entity>.<N+1>`` with read-back -> a *fresh* librados
connection as that entity, ``mon stat`` allowed and ``auth get`` refused -> Secret (ceph-csi
layout) + Vault labels -> status. Retirement is not in the measured path (it runs after
``retireAfter`` from ``Engine.reconcile``); it is run between rotations, untimed, so the
entity count stays small.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

import vaultbridge.app as application
from bench.config import summary
from vaultbridge.model.spec import CredentialRef
from vaultbridge.settings import load_settings
from vaultbridge.testenv.env import Environment

ROTATIONS = 100


def run(env: Environment, log: Callable[[str], None], rotations: int = ROTATIONS) -> dict[str, Any]:
    for key, value in env.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            os.environ[key] = value
    api = k8s_config.new_client_from_config(config_file=str(env.kube.kubeconfig))
    ns = f"bench-cephx-{uuid.uuid4().hex[:6]}"
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    entity = f"client.bench-{uuid.uuid4().hex[:6]}"
    spec = {
        "source": {"mount": "secret", "path": f"bench/{entity}", "field": "key"},
        "secret": {"name": "cephx"},
        "generate": True,
        "target": {"cephx": {"entity": entity, "caps": {"mon": "allow r"}, "retireAfter": "0s"}},
    }
    body = {
        "apiVersion": "vaultbridge.io/v1alpha1",
        "kind": "CredentialRotation",
        "metadata": {"name": "cephx"},
        "spec": spec,
    }
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", body
    )
    app = application.build(load_settings())
    ref = CredentialRef(ns, "cephx")
    try:
        first = app.engine.rotate(ref)  # warm-up: connections, first generation
        if first.result != "promoted":
            raise RuntimeError(f"warm-up rotation failed: {first.message}")
        seconds: list[float] = []
        wall_start = time.perf_counter()
        for i in range(rotations):
            started = time.perf_counter()
            outcome = app.engine.rotate(ref)
            seconds.append(time.perf_counter() - started)
            if outcome.result != "promoted":
                raise RuntimeError(f"rotation {i + 1} failed: {outcome.reason}: {outcome.message}")
            app.engine.reconcile(ref)  # untimed: retire the previous generation
        wall = time.perf_counter() - wall_start
    finally:
        app.close()
        k8s.CoreV1Api(api).delete_namespace(ns)
    result = summary(
        "cephx alternate rotation (generate -> Vault -> apply -> verify -> promote)", seconds, wall
    )
    result["mons"] = len(env.ceph.mon_ids)
    log(
        f"cephx: {rotations} rotations: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"mean {result['mean_ms']} ms ({result['mons']} mon(s))"
    )
    print(
        f"cephx rotation end to end over {rotations}: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, mean {result['mean_ms']} ms"
    )
    return result
