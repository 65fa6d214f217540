"""A real Kubernetes API on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from Go modules by ``testenv/build-bins`` (see ``find_binaries``). TLS
everywhere, RBAC, ServiceAccount token issuing (TokenRequest/TokenReview, which Vault's
Kubernetes auth needs), PodSecurity admission, and the controllers that make ownerReference
garbage collection, namespace deletion and default ServiceAccounts real. No kubelet or scheduler.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaultbridge.testenv.common import (
    TestenvError,
    free_port,
    log_tail,
    spawn,
    stop_pid,
    wait_until,
)

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
    "kubelet",
    "kube-scheduler",
)
PACKAGE = Path(__file__).resolve().parents[1]
CRD_MANIFESTS = (
    PACKAGE / "crds" / "credentialrotations.yaml",
    PACKAGE / "testenv" / "rook-standin-crds.yaml",
)
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
)
NODE_CONTROLLERS = (  # what Deployments on the test node need besides (testenv --node)
    "deployment-controller",
    "replicaset-controller",
    "root-ca-certificate-publisher-controller",
)


def repo_root() -> Path | None:
    """The checkout this package runs from, when it is one (it has testenv/build-bins)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "testenv" / "build-bins").exists() else None


def find_binaries() -> Path:
    """The folder holding the Go-built binaries, building them when missing.

    ``VAULTBRIDGE_TESTENV_BIN`` wins; otherwise ``testenv/build-bins`` of this checkout is run
    (it prints the cache folder at once when everything is built already).
    """
    explicit = os.environ.get("VAULTBRIDGE_TESTENV_BIN")
    if explicit:
        bindir = Path(explicit)
    else:
        root = repo_root()
        if root is None:
            raise TestenvError(
                "Kubernetes binaries: set VAULTBRIDGE_TESTENV_BIN to the folder holding "
                f"{', '.join(BINARIES)} (built by testenv/build-bins in a vaultbridge checkout)"
            )
        done = subprocess.run(
            [str(root / "testenv" / "build-bins")], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise TestenvError(f"testenv/build-bins failed:\n{done.stderr.strip()[-2000:]}")
        bindir = Path(done.stdout.strip().splitlines()[-1])
    missing = [name for name in BINARIES if not os.access(bindir / name, os.X_OK)]
    if missing:
        raise TestenvError(f"Kubernetes binaries: {', '.join(missing)} missing in {bindir}")
    return bindir


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise TestenvError("openssl not found (apt-get install openssl)")
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TestenvError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def make_pki(pki: Path) -> None:
    """CA, apiserver serving cert for 127.0.0.1, admin client cert, ServiceAccount key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    days = "3650"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        days,
        "-subj",
        "/CN=vaultbridge-testenv-ca",
        # what strict X.509 verification (Python 3.13+, OpenSSL 3.5) requires of a CA
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        cwd=pki,
    )
    leaf = "keyUsage=critical,digitalSignature\nauthorityKeyIdentifier=keyid\n"
    (pki / "serving.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n" + leaf
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n" + leaf)
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", "serving.ext"),
        ("admin", "/O=system:masters/CN=vaultbridge-testenv-admin", "client.ext"),
    ):
        _openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=pki,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            days,
            "-extfile",
            ext,
            cwd=pki,
        )
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "testenv",
                        "cluster": {
                            "server": server,
                            "certificate-authority": str(pki / "ca.crt"),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "admin",
                        "user": {
                            "client-certificate": str(pki / "admin.crt"),
                            "client-key": str(pki / "admin.key"),
                        },
                    }
                ],
                "contexts": [
                    {"name": "testenv", "context": {"cluster": "testenv", "user": "admin"}}
                ],
                "current-context": "testenv",
            },
            indent=2,
        )
    )
    path.chmod(0o600)


@dataclass
class KubeCluster:
    """A running etcd + kube-apiserver + kube-controller-manager."""

    workdir: Path
    bindir: Path
    server: str
    kubeconfig: Path
    ca_cert: Path
    pids: dict[str, int] = field(default_factory=dict)
    etcd_ports: tuple[int, int] = (0, 0)  # (client, peer): a restart reuses them

    def _ssl(self) -> ssl.SSLContext:
        pki = self.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """A GET on the apiserver as the admin user (used for readiness checks)."""
        request = urllib.request.Request(self.server + path)  # noqa: S310 - https to loopback
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl()) as resp:  # noqa: S310
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = 5.0,
        *,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """A request on the apiserver as the admin user, JSON in and out."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - https to loopback
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl()) as resp:  # noqa: S310
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def install_crds(self, manifest: Path, timeout: float = 30.0) -> None:
        """Create every CRD in ``manifest`` (YAML, may hold several) and wait until Established."""
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        names = []
        for crd in yaml.safe_load_all(manifest.read_text()):
            if not crd:
                continue
            status, body = self.request("POST", path, crd)
            if status not in (201, 409):
                raise TestenvError(f"installing CRD from {manifest}: HTTP {status} {body[:300]!r}")
            names.append(crd["metadata"]["name"])

        def established() -> bool:
            for name in names:
                status, body = self.get(f"{path}/{name}")
                conditions = json.loads(body).get("status", {}).get("conditions", [])
                if status != 200 or not any(
                    c["type"] == "Established" and c["status"] == "True" for c in conditions
                ):
                    return False
            return True

        wait_until(established, what=f"CRDs from {manifest.name} established", timeout=timeout)

    def ready(self) -> bool:
        status, body = self.get("/readyz")
        return status == 200 and body.strip() == b"ok"

    def stop(self) -> None:
        # the controller-manager and apiserver first, etcd last, so nothing logs a lost store
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            pid = self.pids.get(name)
            if pid:
                stop_pid(pid)

    def restart_control_plane(self, down: float = 0.0, timeout: float = 90.0) -> float:
        """Stop kube-apiserver and etcd, wait ``down`` seconds, start both again on the same
        ports and data (the controller-manager stays and reconnects). Returns the seconds the
        API server did not answer."""
        if not all(self.etcd_ports):
            raise TestenvError("kube: this cluster's etcd ports are unknown (started elsewhere)")
        began = time.monotonic()
        for name in ("kube-apiserver", "etcd"):
            pid = self.pids.pop(name, None)
            if pid:
                stop_pid(pid)
        time.sleep(down)
        logs = self.workdir / "logs"
        _start_etcd(self, *self.etcd_ports, logs / "etcd.log", timeout)
        port = int(self.server.rsplit(":", 1)[1])
        _start_apiserver(self, self.etcd_ports[0], port, logs / "kube-apiserver.log", timeout)
        return time.monotonic() - began

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("workdir", "bindir", "kubeconfig", "ca_cert"):
            data[key] = str(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KubeCluster:
        etcd = data.get("etcd_ports") or (0, 0)
        return cls(
            workdir=Path(data["workdir"]),
            bindir=Path(data["bindir"]),
            server=data["server"],
            kubeconfig=Path(data["kubeconfig"]),
            ca_cert=Path(data["ca_cert"]),
            pids={str(k): int(v) for k, v in data["pids"].items()},
            etcd_ports=(int(etcd[0]), int(etcd[1])),
        )


def start_kube(
    workdir: Path, bindir: Path | None = None, timeout: float = 90.0, *, node: bool = False
) -> KubeCluster:
    """Start etcd, kube-apiserver and kube-controller-manager; return once all three answer.

    ``node``: also run the controllers a real node's Deployments need (``NODE_CONTROLLERS``)."""
    bindir = bindir or find_binaries()
    missing = [name for name in BINARIES[:3] if not os.access(bindir / name, os.X_OK)]
    if missing:
        raise TestenvError(
            f"Kubernetes binaries: {', '.join(missing)} missing in {bindir} "
            "(testenv/build-bins builds them)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    make_pki(pki)
    etcd_port, etcd_peer, api_port, kcm_port = (free_port() for _ in range(4))
    server = f"https://127.0.0.1:{api_port}"
    cluster = KubeCluster(
        workdir=workdir,
        bindir=bindir,
        server=server,
        kubeconfig=workdir / "kubeconfig",
        ca_cert=pki / "ca.crt",
        etcd_ports=(etcd_port, etcd_peer),
    )
    write_kubeconfig(cluster.kubeconfig, server, pki)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    try:
        _start_etcd(cluster, etcd_port, etcd_peer, logs / "etcd.log", timeout)
        _start_apiserver(cluster, etcd_port, api_port, logs / "kube-apiserver.log", timeout)
        # CRDs before the controller-manager: its garbage collector discovers resource types at
        # start and only every 30 s after, so owners of these kinds are watched from the outset
        for manifest in CRD_MANIFESTS:
            cluster.install_crds(manifest)
        controllers = CONTROLLERS + (NODE_CONTROLLERS if node else ())
        _start_controller_manager(
            cluster, kcm_port, logs / "kube-controller-manager.log", timeout, controllers
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_etcd(cluster: KubeCluster, port: int, peer: int, log: Path, timeout: float) -> None:
    client_url = f"http://127.0.0.1:{port}"
    peer_url = f"http://127.0.0.1:{peer}"
    proc = spawn(
        [
            str(cluster.bindir / "etcd"),
            "--name=testenv",
            f"--data-dir={cluster.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=testenv={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        log=log,
    )
    cluster.pids["etcd"] = proc.pid

    def etcd_healthy() -> bool:
        with urllib.request.urlopen(f"{client_url}/health", timeout=1) as resp:  # noqa: S310
            return bool(json.loads(resp.read()).get("health") == "true")

    wait_until(
        etcd_healthy, what=f"etcd on 127.0.0.1:{port}", timeout=timeout, process=proc, log=log
    )


def _start_apiserver(
    cluster: KubeCluster, etcd_port: int, port: int, log: Path, timeout: float
) -> None:
    pki = cluster.workdir / "pki"
    proc = spawn(
        [
            str(cluster.bindir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={cluster.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            # a required setting: Services get addresses from it, but nothing routes them (no
            # kube-proxy, no node network) and every client here is given https://127.0.0.1
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # logs/exec reach a kubelet by the node's hostname (127.0.0.1 here), never by the
            # InternalIP the kubelet detects from eth0 (the network rule)
            "--kubelet-preferred-address-types=Hostname",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--enable-admission-plugins=PodSecurity,NamespaceLifecycle,ServiceAccount",
            "--profiling=false",
            "--v=1",
        ],
        log=log,
    )
    cluster.pids["kube-apiserver"] = proc.pid
    wait_until(
        cluster.ready,
        what=f"kube-apiserver on 127.0.0.1:{port} (/readyz)",
        timeout=timeout,
        process=proc,
        log=log,
    )


def _start_controller_manager(
    cluster: KubeCluster, port: int, log: Path, timeout: float, controllers: tuple[str, ...]
) -> None:
    pki = cluster.workdir / "pki"
    kubeconfig = str(cluster.kubeconfig)
    proc = spawn(
        [
            str(cluster.bindir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--controllers={','.join(controllers)}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={cluster.workdir / 'kcm-certs'}",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ],
        log=log,
    )
    cluster.pids["kube-controller-manager"] = proc.pid

    def default_service_account_exists() -> bool:
        # the serviceaccount controller creates "default" in every namespace: proof it runs
        status, _ = cluster.get("/api/v1/namespaces/default/serviceaccounts/default")
        return status == 200

    try:
        wait_until(
            default_service_account_exists,
            what="kube-controller-manager (default ServiceAccount never appeared)",
            timeout=timeout,
            process=proc,
            log=log,
        )
    except TestenvError as exc:
        raise TestenvError(f"{exc}{log_tail(log)}") from None
