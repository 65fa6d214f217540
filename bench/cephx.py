"""cephx rotation end to end on each Ceph release, both strategies, against Rook's way.

Per release (16 Pacific from the machine's packages; 18 Reef and 20 Tentacle from their root
filesystems, run there on that release's Python and ``python3-rados``, as
``vaultbridge.testenv.matrix`` runs the suites), one mon, one run:

- **alternate**: ``Engine.rotate`` = random bytes from Vault -> new key of the cluster's type ->
  Vault version N+1 (check-and-set) -> journal -> ``auth add <entity>.<N+1>`` with read-back ->
  a *fresh* librados connection as that entity, ``mon stat`` allowed and ``auth get`` refused ->
  Secret (ceph-csi layout) + Vault labels -> status.
- **in-place**: Pacific imports the key and verifies with a fresh connection; Reef and later
  stage a pending key and verify it by read-back (docs/ceph-releases.md).
- **Rook**: what Rook's operator does for a CephClient: the ``ceph`` CLI's ``auth rotate``
  (``auth get-or-create`` of a new client where the release has no ``auth rotate``), then the
  Secret write. Nothing is verified.

Every rotation is timed as ``Engine.rotate`` returns it. No generation is retired in it
(alternate: a new CR every 10 rotations, ``keepPrior: 10``, an hour of grace). In-place on Reef
and later commits the previous rotation's pending key first, as a rotation within
``retireAfter`` of the one before does. The requests each rotation makes are counted on the
wire (``bench.wire``): a figure that does not depend on the machine's speed.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

import vaultbridge.app as application
from bench.config import summary
from bench.wire import counted
from vaultbridge.ceph import CephConnection, read_mon_release
from vaultbridge.model.spec import CredentialRef
from vaultbridge.settings import load_settings
from vaultbridge.testenv.env import Environment, load, start
from vaultbridge.testenv.matrix import run_inside

ROTATIONS = 100
ROOK_SAMPLE = 20
RELEASES = (16, 18, 20)
GOAL_P50_MS = 60.0


def _cr(
    api: k8s.ApiClient, ns: str, name: str, entity: str, strategy: str, grace: str, keep: int
) -> CredentialRef:
    spec = {
        "source": {"mount": "secret", "path": f"bench/{entity}", "field": "key"},
        "secret": {"name": name},
        "generate": True,
        "target": {
            "cephx": {
                "entity": entity,
                "caps": {"mon": "allow r"},
                "strategy": strategy,
                "retireAfter": grace,
                "keepPrior": keep,
            }
        },
    }
    body = {
        "apiVersion": "vaultbridge.io/v1alpha1",
        "kind": "CredentialRotation",
        "metadata": {"name": name},
        "spec": spec,
    }
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", body
    )
    return CredentialRef(ns, name)


BLOCK = 10  # rotations per CR: with keepPrior 10, none retires a generation in the timed path


def _warm(app: application.App, ref: CredentialRef) -> None:
    """The CR's first rotation (untimed): the entity and the Vault path come to exist."""
    first = app.engine.rotate(ref)
    if first.result != "promoted":
        raise RuntimeError(f"first rotation of {ref} failed: {first.message}")


def _rotations(
    app: application.App, refs: Iterator[CredentialRef], rotations: int, *, block: int
) -> tuple[list[float], dict[str, float], list[str]]:
    """``rotations`` timed ``Engine.rotate`` calls, ``block`` per CR, the requests each made on
    average, and the requests of the last one in order."""
    seconds: list[float] = []
    timed: Counter[str] = Counter()
    with counted() as counts:
        while len(seconds) < rotations:
            ref = next(refs)
            for _ in range(min(block, rotations - len(seconds))):
                before = Counter(counts)
                counts.trail.clear()
                started = time.perf_counter()
                outcome = app.engine.rotate(ref)
                seconds.append(time.perf_counter() - started)
                timed += counts - before
                if outcome.result != "promoted":
                    raise RuntimeError(
                        f"rotation of {ref} failed: {outcome.reason}: {outcome.message}"
                    )
        trail = list(counts.trail)
    per_rotation = {name: round(n / len(seconds), 1) for name, n in sorted(timed.items())}
    return seconds, per_rotation, trail


def _rook(env: Environment, api: k8s.ApiClient, ns: str, sample: int) -> tuple[list[float], str]:
    """``ceph auth rotate`` (or ``auth get-or-create`` of a new client) + the Secret write."""
    core = k8s.CoreV1Api(api)
    entity = f"client.rook-{uuid.uuid4().hex[:6]}"
    env.ceph.ceph("auth", "get-or-create", entity, "mon", "allow r")
    try:
        env.ceph.ceph("auth", "rotate", entity, "--format", "json")
        how = "auth rotate"
    except Exception:  # older than 18.2.8 / 19.2.3: no auth rotate
        how = "auth get-or-create (a new client)"
    seconds: list[float] = []
    for i in range(sample):
        started = time.perf_counter()
        if how == "auth rotate":
            out = env.ceph.ceph("auth", "rotate", entity, "--format", "json")
        else:
            out = env.ceph.ceph(
                "auth", "get-or-create", f"{entity}-{i}", "mon", "allow r", "--format", "json"
            )
        key = str(json.loads(out)[0]["key"])
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="rook-client"),
            string_data={"userID": entity.removeprefix("client."), "userKey": key},
        )
        if i == 0:
            core.create_namespaced_secret(ns, body)
        else:
            core.replace_namespaced_secret("rook-client", ns, body)
        seconds.append(time.perf_counter() - started)
    return seconds, how


def measure(
    env: Environment, rotations: int = ROTATIONS, sample: int = ROOK_SAMPLE
) -> dict[str, Any]:
    """Both strategies and Rook's path against ``env``'s mons, in this process."""
    for key, value in env.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            os.environ[key] = value
    api = k8s_config.new_client_from_config(config_file=str(env.kube.kubeconfig))
    ns = f"bench-cephx-{uuid.uuid4().hex[:6]}"
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    app = application.build(load_settings())
    result: dict[str, Any] = {}
    try:
        with CephConnection(str(env.ceph.conf), env.ceph.user, str(env.ceph.admin_keyring)) as c:
            release = read_mon_release(c)
        result["ceph"] = release.describe()
        result["python"] = sys.version.split()[0]
        for strategy in ("alternate", "in-place"):
            # alternate: a new CR every BLOCK rotations, keepPrior 10 and an hour of grace, so
            # no rotation retires a generation. in-place: one CR, an hour of grace: on Reef and
            # later each rotation first commits the previous one's pending key (one mon
            # command), as any rotation within retireAfter of the one before does
            block = BLOCK if strategy == "alternate" else rotations
            grace, keep = "1h", (BLOCK if strategy == "alternate" else 1)

            def refs(
                strategy: str = strategy, grace: str = grace, keep: int = keep
            ) -> Iterator[CredentialRef]:
                for n in itertools.count():
                    entity = f"client.bench-{uuid.uuid4().hex[:6]}"
                    ref = _cr(api, ns, f"{strategy}-{n}", entity, strategy, grace, keep)
                    _warm(app, ref)
                    yield ref

            began = time.perf_counter()
            seconds, requests, trail = _rotations(app, refs(), rotations, block=block)
            mode = "pending key" if strategy == "in-place" and release.pending_keys() else ""
            title = f"cephx {strategy}{f' ({mode})' if mode else ''} rotation, verified"
            result[strategy] = {
                **summary(title, seconds, time.perf_counter() - began),
                "requests_per_rotation": requests,
                "requests_of_the_last_rotation": trail,
            }
        began = time.perf_counter()
        seconds, how = _rook(env, api, ns, sample)
        result["rook"] = summary(
            f"Rook: ceph CLI {how} + Secret write", seconds, time.perf_counter() - began
        )
    finally:
        app.close()
        k8s.CoreV1Api(api).delete_namespace(ns)
    rook = result["rook"]["p50_ms"]
    for strategy in ("alternate", "in-place"):
        result[f"rook_p50_over_{strategy.replace('-', '_')}_p50"] = round(
            rook / result[strategy]["p50_ms"], 2
        )
    return result


def _requests(counts: dict[str, float]) -> str:
    return ", ".join(f"{n:g} {name}" for name, n in counts.items())


def _line(major: int, result: dict[str, Any]) -> str:
    alt, inp, rook = result["alternate"], result["in-place"], result["rook"]
    goal = "met" if max(alt["p50_ms"], inp["p50_ms"]) <= GOAL_P50_MS else "MISSED"
    return (
        f"cephx on {result['ceph']} (Python {result['python']}): alternate p50 {alt['p50_ms']} "
        f"/ p99 {alt['p99_ms']} ms, in-place p50 {inp['p50_ms']} / p99 {inp['p99_ms']} ms; "
        f"Rook p50 {rook['p50_ms']} ms = {result['rook_p50_over_alternate_p50']}x alternate, "
        f"{result['rook_p50_over_in_place_p50']}x in-place; goal p50 <= {GOAL_P50_MS:g} ms "
        f"{goal}; per rotation: alternate {_requests(alt['requests_per_rotation'])}; in-place "
        f"{_requests(inp['requests_per_rotation'])}"
    )


def run(
    env: Environment, log: Callable[[str], None], releases: tuple[int, ...] = RELEASES
) -> dict[str, Any]:
    """Every release from one run: 16 against ``env`` (the machine's Pacific mons), the others
    against their own one-mon environment, measured inside their root filesystems."""
    results: dict[str, Any] = {}
    for major in releases:
        if major == env.ceph.release:
            result = measure(env)
        else:
            own = start(mons=1, ceph=major)
            try:
                done, _python = run_inside(major, own, ["-m", "bench.cephx"], timeout=1200)
            finally:
                own.stop()
            if done.returncode != 0:
                raise RuntimeError(f"cephx bench on ceph {major} failed:\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
        log(_line(major, result))
        results[str(major)] = result
    return results


if __name__ == "__main__":  # inside a release's root: the environment is the reused one
    reused = load()
    if reused is None:
        raise SystemExit("python -m bench.cephx runs inside a release's root (bench/cephx.py run)")
    print(json.dumps(measure(reused)))
