"""How long the test node's kubelet takes to put an updated Secret into a Pod's volume.

A Pod of the consumer image mounts a Secret and appends every change it sees, with the time,
to a file in a hostPath folder; each update is timed from the API write to that line. Used by
the node tests and by ``make bench BENCH_ARGS="--only node"``.
"""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path

from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.env import Environment
from vaultbridge.testenv.node import wait_for_pod

WATCHER = """
import sys, time
path, out = sys.argv[1], sys.argv[2]
seen = None
while True:
    try:
        value = open(path).read()
    except OSError:
        value = None
    if value != seen:
        seen = value
        with open(out, "a") as f:
            f.write(f"{time.time()} {value}\\n")
    time.sleep(0.05)
"""


def secret_propagation(env: Environment, updates: int, namespace: str) -> list[float]:
    """Seconds from each of ``updates`` Secret writes to the Pod seeing it in its volume.

    Makes ``namespace`` (a Secret and the watcher Pod in it) and deletes it afterwards."""
    if env.node is None:
        raise TestenvError("secret propagation needs the node: start the environment with --node")
    kube, image = env.kube, env.node.images["consumer"]
    with tempfile.TemporaryDirectory(prefix="vb-propagation-") as folder:
        shared = Path(folder)
        shared.chmod(0o777)  # the watcher writes as whatever user the image runs
        _ok(kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}}))
        try:
            base = f"/api/v1/namespaces/{namespace}"
            _ok(kube.request("POST", f"{base}/secrets", _secret("0")))
            _ok(kube.request("POST", f"{base}/pods", _pod(image, str(shared))))
            wait_for_pod(kube, namespace, "watcher", until="Ready")
            seen = shared / "seen"
            _first_line(seen, "0", 90)
            delays = []
            for n in range(1, updates + 1):
                written = time.time()
                _ok(
                    kube.request(
                        "PATCH",
                        f"{base}/secrets/s",
                        {"data": {"v": base64.b64encode(str(n).encode()).decode()}},
                        content_type="application/merge-patch+json",
                    )
                )
                delays.append(_first_line(seen, str(n), 180) - written)
            return delays
        finally:
            kube.request("DELETE", f"/api/v1/namespaces/{namespace}", None)


def _first_line(seen: Path, value: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if seen.exists():
            for line in seen.read_text().splitlines():
                stamp, _, found = line.partition(" ")
                if found == value:
                    return float(stamp)
        time.sleep(0.1)
    raise TestenvError(f"the watcher Pod never saw value {value} within {timeout:.0f} s")


def _ok(answer: tuple[int, bytes]) -> None:
    status, body = answer
    if status >= 300:
        raise TestenvError(f"API server answered {status}: {body[:300]!r}")


def _secret(value: str) -> dict[str, object]:
    return {"metadata": {"name": "s"}, "stringData": {"v": value}}


def _pod(image: str, shared: str) -> dict[str, object]:
    return {
        "metadata": {"name": "watcher"},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "w",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["/usr/bin/python3", "-c", WATCHER, "/s/v", "/out/seen"],
                    "volumeMounts": [
                        {"name": "s", "mountPath": "/s"},
                        {"name": "out", "mountPath": "/out"},
                    ],
                }
            ],
            "volumes": [
                {"name": "s", "secret": {"secretName": "s"}},
                {"name": "out", "hostPath": {"path": shared, "type": "Directory"}},
            ],
        },
    }
