"""Start and stop the whole environment (OpenBao, Ceph mons, Kubernetes API) as one unit.

``up`` starts the three in parallel in one temp folder, writes a shell-sourceable ``env.sh`` and
a ``state.json`` (pids, ports, paths) into the state folder (``.testenv/`` of the checkout by
default); ``down`` reads that state, stops every process by pid and removes the data. A failure
while starting stops whatever had started, so nothing half-started is left running.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaultbridge.testenv.bao import OpenBaoServer, start_openbao
from vaultbridge.testenv.ceph import CephCluster, start_ceph
from vaultbridge.testenv.common import TestenvError, pid_alive, processes_mentioning, sweep
from vaultbridge.testenv.images import all_images
from vaultbridge.testenv.kube import KubeCluster, find_binaries, repo_root, start_kube
from vaultbridge.testenv.node import Node, start_node


def default_state_dir() -> Path:
    explicit = os.environ.get("VAULTBRIDGE_TESTENV_STATE")
    if explicit:
        return Path(explicit)
    root = repo_root()
    return (root if root is not None else Path.cwd()) / ".testenv"


@dataclass
class Environment:
    """The three running servers and where their data lives."""

    workdir: Path
    vault: OpenBaoServer
    ceph: CephCluster
    kube: KubeCluster
    started_seconds: float = 0.0
    node: Node | None = None  # testenv --node: containerd, kubelet and kube-scheduler

    def variables(self) -> dict[str, str]:
        """The settings vaultbridge and the CLIs need to reach the three servers."""
        path_dirs = [str(self.kube.bindir), str(Path(sys.executable).parent), "/usr/bin"]
        return {
            "KUBECONFIG": str(self.kube.kubeconfig),
            "VAULT_ADDR": self.vault.addr,
            "BAO_ADDR": self.vault.addr,
            # the test server's dev root token, so `bao`/`vault` from this shell are let in
            "VAULT_TOKEN": self.vault.token,
            "BAO_TOKEN": self.vault.token,
            "VAULTBRIDGE_VAULT__ADDR": self.vault.addr,
            "VAULTBRIDGE_VAULT__AUTH": "token",
            "VAULTBRIDGE_VAULT__TOKEN": self.vault.token,
            "VAULTBRIDGE_KUBE__KUBECONFIG": str(self.kube.kubeconfig),
            "VAULTBRIDGE_CEPH__CONF": str(self.ceph.conf),
            "VAULTBRIDGE_CEPH__USER": self.ceph.user,
            "VAULTBRIDGE_CEPH__KEYRING": str(self.ceph.admin_keyring),
            "CEPH_CONF": str(self.ceph.conf),
            "CEPH_ARGS": f"--keyring {self.ceph.admin_keyring} --name {self.ceph.user}",
            "VAULTBRIDGE_TESTENV_BIN": str(self.kube.bindir),
            "PATH": ":".join(path_dirs) + ":$PATH",
        }

    def env_sh(self) -> str:
        lines = ["# written by testenv/up; source it: . .testenv/env.sh"]
        for key, value in self.variables().items():
            if key == "PATH":
                lines.append(f'export PATH="{value.removesuffix(":$PATH")}:$PATH"')
            else:
                lines.append(f"export {key}={shlex.quote(value)}")
        return "\n".join(lines) + "\n"

    def healthy(self) -> bool:
        # mons may have been restarted by a test (new pids): count them by their data folder
        pids = [self.vault.pid, *self.kube.pids.values()]
        if self.node is not None:
            pids += [self.node.pids[n] for n in ("containerd", "kubelet") if n in self.node.pids]
        mons = processes_mentioning(str(self.ceph.conf))
        return all(pid_alive(pid) for pid in pids) and len(mons) >= len(self.ceph.mon_ids)

    def stop(self) -> None:
        stoppers = [self.kube.stop, self.ceph.stop, self.vault.stop]
        if self.node is not None:
            stoppers.insert(0, self.node.stop)  # Pods first, while the API server still runs
        for stopper in stoppers:
            try:
                stopper()
            except Exception as exc:  # keep stopping the others
                print(f"testenv: stopping failed: {exc}", file=sys.stderr)
        sweep(str(self.workdir))
        shutil.rmtree(self.workdir, ignore_errors=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "vault": self.vault.to_dict(),
            "ceph": self.ceph.to_dict(),
            "kube": self.kube.to_dict(),
            "started_seconds": self.started_seconds,
            "node": self.node.to_dict() if self.node is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Environment:
        return cls(
            workdir=Path(data["workdir"]),
            vault=OpenBaoServer.from_dict(data["vault"]),
            ceph=CephCluster.from_dict(data["ceph"]),
            kube=KubeCluster.from_dict(data["kube"]),
            started_seconds=float(data.get("started_seconds", 0.0)),
            node=Node.from_dict(data["node"]) if data.get("node") else None,
        )


def _retrying(start_one: Callable[..., Any], folder: Path, *args: Any) -> Any:
    """Start one server; when a port it picked was taken meanwhile, again with new ports."""
    for attempt in range(1, 4):
        try:
            return start_one(
                folder if attempt == 1 else folder.with_name(f"{folder.name}-{attempt}"), *args
            )
        except TestenvError as exc:
            if "busy" not in str(exc) or attempt == 3:
                raise
            print(f"testenv: {exc}; trying other ports", file=sys.stderr)
    raise AssertionError("unreachable")


def start(
    mons: int = 1, workdir: Path | None = None, *, ceph: int = 16, node: bool = False
) -> Environment:
    """Start OpenBao, ``mons`` Ceph monitors of release ``ceph`` and the Kubernetes API, in
    parallel; with ``node``, then a real node (``vaultbridge.testenv.node``), its images built
    first when missing."""
    if mons < 1:
        raise TestenvError(f"--mons must be at least 1, got {mons}")
    began = time.monotonic()
    bindir = find_binaries()  # before anything starts: a failed build leaves nothing running
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vaultbridge-testenv-"))
    workdir.mkdir(parents=True, exist_ok=True)
    images = all_images() if node else None  # before anything starts, like the binaries
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="testenv") as pool:
        futures: dict[str, Future[Any]] = {
            "vault": pool.submit(_retrying, start_openbao, workdir / "openbao"),
            "ceph": pool.submit(
                _retrying, functools.partial(start_ceph, release=ceph), workdir / "ceph", mons
            ),
            "kube": pool.submit(
                _retrying, functools.partial(start_kube, node=node), workdir / "kube", bindir
            ),
        }
        started: dict[str, Any] = {}
        errors: list[str] = []
        for name, future in futures.items():
            try:
                started[name] = future.result()
            except BaseException as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        for server in started.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise TestenvError("could not start the test environment:\n  " + "\n  ".join(errors))
    env = Environment(
        workdir=workdir,
        vault=started["vault"],
        ceph=started["ceph"],
        kube=started["kube"],
    )
    if images is not None:
        try:
            env.node = start_node(env.kube, images)
        except BaseException:
            env.stop()
            raise
    env.started_seconds = time.monotonic() - began
    return env


def up(
    mons: int = 1, state_dir: Path | None = None, *, ceph: int = 16, node: bool = False
) -> Environment:
    """Start the environment and record it in ``state_dir`` (``.testenv/``)."""
    state_dir = state_dir or default_state_dir()
    existing = load(state_dir)
    if existing is not None:
        if existing.healthy():
            raise TestenvError(
                f"a test environment is already running (state in {state_dir}); "
                "run testenv/down first"
            )
        existing.stop()
    env = start(mons=mons, ceph=ceph, node=node)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(env.to_dict(), indent=2))
    (state_dir / "env.sh").write_text(env.env_sh())
    return env


def load(state_dir: Path | None = None) -> Environment | None:
    state = (state_dir or default_state_dir()) / "state.json"
    if not state.exists():
        return None
    return Environment.from_dict(json.loads(state.read_text()))


def down(state_dir: Path | None = None) -> bool:
    """Stop what ``up`` started and remove its data. False when nothing was running."""
    state_dir = state_dir or default_state_dir()
    env = load(state_dir)
    if env is None:
        return False
    env.stop()
    for name in ("state.json", "env.sh"):
        (state_dir / name).unlink(missing_ok=True)
    return True
