"""The real node (``testenv --node``): containerd + runc, kubelet and kube-scheduler on
loopback, the images of ``make image`` imported. Pods run with the host network; a mounted
Secret follows its updates; stopping leaves no process, mount, cgroup or folder behind."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from node_helpers import node_of

from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.env import Environment, start
from vaultbridge.testenv.node import OUTSIDE_ROOT, cgroup_root, wait_for_pod
from vaultbridge.testenv.propagation import secret_propagation

pytestmark = pytest.mark.integration


def test_the_node_is_ready_and_runs_host_network_pods(
    node_env: Environment, core: k8s.CoreV1Api
) -> None:
    node = node_of(node_env)
    found = core.read_node(node.name)
    ready = {c.type: c.status for c in found.status.conditions}
    assert ready["Ready"] == "True" and not found.spec.taints
    images = {name for image in found.status.images for name in image.names or []}
    assert set(node.images.values()) <= images  # imported, nothing pulled


def test_a_mounted_secret_follows_its_updates(node_env: Environment) -> None:
    """How long the kubelet takes to put an updated Secret into a Pod's volume."""
    delays = secret_propagation(node_env, 3, "node-secret")
    print(
        f"Secret -> mounted volume: {', '.join(f'{d:.1f}' for d in delays)} s "
        f"(median {statistics.median(delays):.1f} s)"
    )
    assert len(delays) == 3 and all(d > 0 for d in delays)


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
