"""A real single node for the test cluster: containerd + runc, kubelet and kube-scheduler.

Everything stays on loopback: Pods use the host network and reach the API server at
127.0.0.1, the kubelet and containerd listen on 127.0.0.1 or on Unix sockets in the node's
folder, and the only CNI plugin is ``loopback``. The images come from ``make image``
(``vaultbridge.testenv.images``), imported into containerd: nothing is pulled.

What a kubelet needs here (cgroup v1, no systemd, runc unable to lower ``oom_score_adj``) is
set in :func:`containerd_config` and :func:`kubelet_config`. :meth:`Node.stop` removes every
container, mount, cgroup and process the node made, and the folders the kubelet writes outside
its root (``/var/lib/kubelet/device-plugins``, ``/var/log/pods``, ``/var/log/containers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaultbridge.testenv.common import (
    TestenvError,
    free_port,
    log_tail,
    pid_alive,
    spawn,
    stop_pid,
    wait_until,
)
from vaultbridge.testenv.images import Image, all_images
from vaultbridge.testenv.kube import KubeCluster

NAMESPACE = "k8s.io"  # containerd's namespace for the CRI
READY_TIMEOUT = 120.0
OUTSIDE_ROOT = (  # what the kubelet and containerd create outside the node's folder
    Path("/var/lib/kubelet"),
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/run/containerd"),
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYNC_FREQUENCY = 10  # the kubelet's, in seconds (60 by default)


def _tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        raise TestenvError(
            f"node: `{name}` not found; apt-get install containerd runc "
            "containernetworking-plugins "
            "(make setup does)"
        )
    return path


def containerd_config(workdir: Path, pause: str) -> str:
    """containerd 1.6's CRI settings for this machine (see TESTENV notes in docs/node.md)."""
    return f"""version = 2
root = "{workdir}/containerd/root"
state = "{workdir}/containerd/state"

[grpc]
  address = "{workdir}/containerd/containerd.sock"

[ttrpc]
  address = "{workdir}/containerd/containerd.sock.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{workdir}/cni"
    max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir}/containerd/opt"
"""


def kubelet_config(workdir: Path, ca: Path, port: int, healthz: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine has cgroup v1
        "cgroupDriver": "cgroupfs",
        # a kubelet removes every pod cgroup under its root that is not one of its Pods: two
        # nodes sharing /kubepods kill each other's containers as they start
        "cgroupRoot": cgroup_root(workdir),
        "address": "127.0.0.1",
        "port": port,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "readOnlyPort": 0,
        "makeIPTablesUtilChains": False,
        "protectKernelDefaults": False,
        "failSwapOn": False,
        "syncFrequency": f"{SYNC_FREQUENCY}s",  # how soon a mounted Secret follows an update
        "containerRuntimeEndpoint": f"unix://{workdir}/containerd/containerd.sock",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "staticPodPath": "",
        "podLogsDir": "/var/log/pods",
    }


@dataclass
class Node:
    """containerd, kubelet and kube-scheduler of the test cluster, started by :func:`start_node`."""

    workdir: Path
    name: str
    images: dict[str, str] = field(default_factory=dict)  # image name -> ref
    pids: dict[str, int] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)  # of OUTSIDE_ROOT: absent before the start

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 120.0) -> str:
        argv = [_tool("ctr"), "--address", str(self.socket), "--namespace", NAMESPACE, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise TestenvError(
                f"node: ctr {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}"
            )
        return done.stdout

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop the kubelet, every container and containerd; undo the mounts, cgroups and
        folders the node made. Safe to call twice and from another process."""
        for name in ("kube-scheduler", "kubelet"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                stop_pid(pid)
        if "containerd" in self.pids and pid_alive(self.pids["containerd"]):
            self._remove_containers()
        pid = self.pids.pop("containerd", None)
        if pid is not None:
            stop_pid(pid)
        for shim in _processes_mentioning(str(self.workdir)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(shim, signal.SIGKILL)
        _unmount_under(self.workdir)
        _remove_cgroups(cgroup_root(self.workdir).lstrip("/"))
        for folder in self.made:  # only what did not exist before: never the machine's own
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _remove_containers(self) -> None:
        with contextlib.suppress(TestenvError, subprocess.TimeoutExpired):
            for line in self.ctr("tasks", "ls", "-q", timeout=30).split():
                with contextlib.suppress(TestenvError):
                    self.ctr("tasks", "kill", "--signal", "SIGKILL", line, timeout=30)
                with contextlib.suppress(TestenvError):
                    self.ctr("tasks", "delete", "--force", line, timeout=30)
            for line in self.ctr("containers", "ls", "-q", timeout=30).split():
                with contextlib.suppress(TestenvError):
                    self.ctr("containers", "delete", line, timeout=30)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "name": self.name,
            "images": dict(self.images),
            "pids": dict(self.pids),
            "made": list(self.made),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Node:
        return cls(
            workdir=Path(data["workdir"]),
            name=str(data["name"]),
            images={str(k): str(v) for k, v in data.get("images", {}).items()},
            pids={str(k): int(v) for k, v in data.get("pids", {}).items()},
            made=[str(p) for p in data.get("made", [])],
        )


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _unmount_under(folder: Path) -> None:
    prefix = str(folder.resolve())
    for _attempt in range(3):
        mounts = [
            line.split()[1].replace("\\040", " ")
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(prefix)
        ]
        if not mounts:
            return
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def cgroup_root(workdir: Path) -> str:
    """The node's own cgroup, in every hierarchy: its Pods' cgroups are made under it."""
    return f"/{workdir.name}"


def _make_cgroups(name: str) -> None:
    """Make cgroup ``name`` in every hierarchy (the kubelet refuses a root that is missing in
    one); a new cpuset cgroup is empty until given its parent's CPUs and memory nodes."""
    for hierarchy in CGROUP_ROOT.iterdir():
        if hierarchy.is_symlink() or not hierarchy.is_dir():
            continue
        top = hierarchy / name
        top.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and not (top / knob).read_text().strip():
                (top / knob).write_text((hierarchy / knob).read_text())


def _remove_cgroups(name: str) -> None:
    if not CGROUP_ROOT.is_dir():
        return
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for folder in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def start_node(kube: KubeCluster, images: list[Image] | None = None) -> Node:
    """Start containerd (the images imported), the kubelet and kube-scheduler; return once the
    Node is Ready and a probe Pod ran to completion.

    The node's folder is a new one under /tmp, whatever the environment's folder: the kubelet's
    and containerd's Unix sockets live in it, and a socket path may hold 107 bytes at most."""
    workdir = Path(tempfile.mkdtemp(prefix="vb-node-", dir="/tmp"))
    for sub in ("containerd", "cni", "kubelet", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    images = images if images is not None else all_images()
    node = Node(workdir, socket.gethostname(), {i.name: i.ref for i in images})
    node.made = [str(p) for p in OUTSIDE_ROOT if not p.exists()]
    try:
        _make_cgroups(cgroup_root(workdir).lstrip("/"))
        _start_containerd(node, node.images["pause"])
        for image in images:
            node.ctr("images", "import", "--no-unpack=false", str(image.archive), timeout=600)
        _start_kubelet(node, kube)
        _start_scheduler(node, kube)
        _wait_ready(node, kube)
    except BaseException:
        node.stop()
        raise
    return node


def _start_containerd(node: Node, pause: str) -> None:
    config = node.workdir / "containerd" / "config.toml"
    config.write_text(containerd_config(node.workdir, pause))
    (node.workdir / "cni" / "10-loopback.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "loopback", "plugins": [{"type": "loopback"}]})
    )
    log = node.workdir / "logs" / "containerd.log"
    proc = spawn([_tool("containerd"), "--config", str(config)], log=log)
    node.pids["containerd"] = proc.pid
    wait_until(
        lambda: node.socket.exists() and bool(node.ctr("version", timeout=5)),
        what="containerd",
        timeout=30,
        process=proc,
        log=log,
    )


def _start_kubelet(node: Node, kube: KubeCluster) -> None:
    port, healthz = free_port(), free_port()
    config = node.workdir / "kubelet" / "config.yaml"
    config.write_text(yaml.safe_dump(kubelet_config(node.workdir, kube.ca_cert, port, healthz)))
    log = node.workdir / "logs" / "kubelet.log"
    proc = spawn(
        [
            str(kube.bindir / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={kube.kubeconfig}",
            f"--root-dir={node.workdir / 'kubelet' / 'root'}",
            f"--cert-dir={node.workdir / 'kubelet' / 'pki'}",
            "--v=1",
        ],
        log=log,
    )
    node.pids["kubelet"] = proc.pid


def _start_scheduler(node: Node, kube: KubeCluster) -> None:
    log = node.workdir / "logs" / "kube-scheduler.log"
    kubeconfig = str(kube.kubeconfig)
    proc = spawn(
        [
            str(kube.bindir / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--v=1",
        ],
        log=log,
    )
    node.pids["kube-scheduler"] = proc.pid


def _wait_ready(node: Node, kube: KubeCluster) -> None:
    log = node.workdir / "logs" / "kubelet.log"

    def ready() -> bool:
        status, body = kube.get(f"/api/v1/nodes/{node.name}")
        if status != 200:
            return False
        found = json.loads(body)
        conditions = {c["type"]: c["status"] for c in found.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") != "True":
            return False
        if found.get("spec", {}).get("taints"):
            # no node lifecycle controller runs here: the not-ready taint stays unless removed
            kube.request(
                "PATCH",
                f"/api/v1/nodes/{node.name}",
                {"spec": {"taints": None}},
                content_type="application/merge-patch+json",
            )
            return False
        return True

    try:
        wait_until(ready, what=f"Node {node.name} Ready", timeout=READY_TIMEOUT, log=log)
        _probe(node, kube)
    except TestenvError as exc:
        raise TestenvError(f"{exc}{log_tail(log)}") from None


def _probe(node: Node, kube: KubeCluster) -> None:
    """A hostNetwork Pod of the consumer image that prints and exits: proof the node runs Pods."""
    name = f"node-probe-{int(time.time())}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": node.images["consumer"],
                    "imagePullPolicy": "Never",
                    "command": ["/usr/bin/python3", "-c", "print('node ready')"],
                }
            ],
        },
    }
    kube.request("POST", "/api/v1/namespaces/default/pods", pod)
    wait_for_pod(kube, "default", name, until="Succeeded")
    kube.request("DELETE", f"/api/v1/namespaces/default/pods/{name}", None)


STUCK = {  # a container waiting for one of these will not start by itself: fail at once
    "ErrImageNeverPull": "not in the node's store (make image, then testenv/up --node)",
    "ErrImagePull": "the image cannot be pulled (no registry is reachable here)",
    "ImagePullBackOff": "the image cannot be pulled (no registry is reachable here)",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "the container's configuration is wrong",
    "CreateContainerError": "the runtime could not create the container",
    "CrashLoopBackOff": "the container keeps exiting",
}


def wait_for_pod(
    kube: KubeCluster, namespace: str, name: str, *, until: str, timeout: float = READY_TIMEOUT
) -> dict[str, Any]:
    """Wait until Pod ``namespace/name`` is ``until`` (``Succeeded`` or ``Ready``) and return
    it. A Pod that cannot get there by itself (its image is not in the node's store, a crash
    loop, a failure) is reported at once, naming the container, its image and the reason."""
    deadline = time.monotonic() + timeout
    last = "not created yet"
    while time.monotonic() < deadline:
        status, body = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if status == 200:
            pod = json.loads(body)
            state = pod.get("status", {})
            phase = state.get("phase", "")
            images = {c["name"]: c.get("image", "") for c in pod["spec"].get("containers", [])}
            for container in state.get("containerStatuses", []) or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason", "")
                if reason in STUCK:
                    raise TestenvError(
                        f"Pod {namespace}/{name}: container {container['name']} "
                        f"({images.get(container['name'], '?')}): {reason}: {STUCK[reason]}"
                    )
            if phase == "Failed":
                ended = [
                    f"{c['name']}: {((c.get('state') or {}).get('terminated') or {}).get('reason')}"
                    for c in state.get("containerStatuses", []) or []
                ]
                raise TestenvError(f"Pod {namespace}/{name} failed ({', '.join(ended)})")
            conditions = {c["type"]: c["status"] for c in state.get("conditions", []) or []}
            if phase == until or (until == "Ready" and conditions.get("Ready") == "True"):
                return dict(pod)
            last = f"phase {phase or '?'}"
        time.sleep(0.25)
    raise TestenvError(f"Pod {namespace}/{name} not {until} after {timeout:.0f} s ({last})")
