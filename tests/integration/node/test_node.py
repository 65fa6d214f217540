"""The real node (``testenv --node``): containerd + runc, kubelet and kube-scheduler on
loopback, the images of ``make image`` imported. Pods run with the host network; a mounted
Secret follows its updates; stopping leaves no process, mount, cgroup or folder behind."""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from node_helpers import node_of

from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.env import Environment, start
from vaultbridge.testenv.node import OUTSIDE_ROOT, cgroup_root, wait_for_pod

pytestmark = pytest.mark.integration

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


def test_the_node_is_ready_and_runs_host_network_pods(
    node_env: Environment, core: k8s.CoreV1Api
) -> None:
    node = node_of(node_env)
    found = core.read_node(node.name)
    ready = {c.type: c.status for c in found.status.conditions}
    assert ready["Ready"] == "True" and not found.spec.taints
    images = {name for image in found.status.images for name in image.names or []}
    assert set(node.images.values()) <= images  # imported, nothing pulled


def test_a_mounted_secret_follows_its_updates(
    node_env: Environment, core: k8s.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """How long the kubelet takes to put an updated Secret into a Pod's volume."""
    node = node_of(node_env)
    shared = tmp_path_factory.mktemp("watch")
    shared.chmod(0o777)
    ns = "node-secret"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    core.create_namespaced_secret(
        ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="s"), string_data={"v": "0"})
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "watcher"},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "w",
                    "image": node.images["consumer"],
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
                {"name": "out", "hostPath": {"path": str(shared), "type": "Directory"}},
            ],
        },
    }
    core.create_namespaced_pod(ns, pod)
    seen = shared / "seen"
    deadline = time.monotonic() + 90
    while not (seen.exists() and " 0" in seen.read_text()):
        assert time.monotonic() < deadline, core.read_namespaced_pod("watcher", ns).status
        time.sleep(0.5)
    delays = []
    for value in ("1", "2", "3"):
        written = time.time()
        core.patch_namespaced_secret(
            "s", ns, {"data": {"v": base64.b64encode(value.encode()).decode()}}
        )
        deadline = time.monotonic() + 120
        while True:
            lines = [line.split(" ", 1) for line in seen.read_text().splitlines() if line.strip()]
            hit = [float(t) for t, v in lines if v == value]
            if hit:
                delays.append(hit[0] - written)
                break
            assert time.monotonic() < deadline, f"the Pod never saw value {value}"
            time.sleep(0.2)
    print(
        f"Secret -> mounted volume: {', '.join(f'{d:.1f}' for d in delays)} s "
        f"(median {statistics.median(delays):.1f} s)"
    )
    assert all(d > 0 for d in delays)
    core.delete_namespace(ns)


def test_an_image_not_in_the_node_s_store_fails_at_once_and_names_it(
    node_env: Environment, core: k8s.CoreV1Api
) -> None:
    """No registry is reachable: a Pod of an image ``make image`` did not build must fail with
    a clear reason, never hang until a timeout."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "missing-image"},
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Never",
            "containers": [
                {"name": "c", "image": "vaultbridge.test/absent:0", "imagePullPolicy": "Never"}
            ],
        },
    }
    core.create_namespaced_pod("default", pod)
    began = time.monotonic()
    with pytest.raises(TestenvError) as failed:
        wait_for_pod(node_env.kube, "default", "missing-image", until="Ready", timeout=120)
    assert time.monotonic() - began < 60
    assert "vaultbridge.test/absent:0" in str(failed.value)
    assert "ErrImageNeverPull" in str(failed.value) and "make image" in str(failed.value)
    core.delete_namespaced_pod("missing-image", "default")


def test_stopping_the_node_leaves_nothing_behind(tmp_path: Path) -> None:
    before = {p for p in OUTSIDE_ROOT if p.exists()}
    kubepods = set(Path("/sys/fs/cgroup").glob("*/kubepods"))
    env = start(mons=1, node=True, workdir=tmp_path / "env")
    node = node_of(env)
    workdir = str(node.workdir)
    env.stop()
    mounts = [
        line for line in Path("/proc/self/mounts").read_text().splitlines() if workdir in line
    ]
    assert mounts == []
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if workdir.encode() in (entry / "cmdline").read_bytes():
                    processes.append(entry.name)
            except OSError:
                pass
    assert processes == []
    assert not node.workdir.exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*{cgroup_root(node.workdir)}"))
    assert set(Path("/sys/fs/cgroup").glob("*/kubepods")) == kubepods
    assert {p for p in OUTSIDE_ROOT if p.exists()} == before
