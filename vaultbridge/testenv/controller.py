"""``vaultbridge run`` as a child process against the environment: the demo, the tests and the
benchmarks start the controller this way. Its log goes to a file the caller names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from vaultbridge.testenv.common import free_port
from vaultbridge.testenv.env import Environment


class ControllerProcess:
    """One ``vaultbridge run`` for ``namespace`` (also its Lease's), on a free loopback port,
    with a webhook ``token``; ``settings`` are further ``VAULTBRIDGE_*`` variables."""

    def __init__(
        self,
        env: Environment,
        namespace: str,
        log_path: Path,
        token: str,
        **settings: str,
    ) -> None:
        self.port = free_port()
        self.token = token
        self.log_path = log_path
        variables = env.variables()
        path = variables.pop("PATH").removesuffix(":$PATH")
        self.environ = {
            **os.environ,
            **variables,
            "PATH": f"{path}:{os.environ.get('PATH', '')}",
            "VAULTBRIDGE_HTTP__PORT": str(self.port),
            "VAULTBRIDGE_HTTP__BIND": "127.0.0.1",
            "VAULTBRIDGE_KUBE__NAMESPACES": namespace,
            "VAULTBRIDGE_KUBE__LEASE_NAMESPACE": namespace,
            "VAULTBRIDGE_TRIGGERS__WEBHOOK_TOKEN": token,
            "VAULTBRIDGE_TRIGGERS__POLL_INTERVAL": "0",
            "VAULTBRIDGE_LOG_LEVEL": "INFO",
        }
        self.environ.pop("VAULTBRIDGE_FAULT", None)
        self.environ.update(settings)
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "vaultbridge"), "run"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.environ,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, str]:
        """One HTTP request to the controller (the webhook token unless ``token``)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def readyz(self) -> dict[str, Any] | None:
        try:
            _status, body = self.call("GET", "/readyz")
            return dict(json.loads(body))
        except (OSError, ValueError):
            return None

    def wait_leading(self, timeout: float = 60.0) -> float:
        """Seconds until it leads (it has listed and watches everything by then)."""
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vaultbridge run exited: {self.output()[-3000:]}")
            ready = self.readyz()
            if ready is not None and ready.get("role") == "leader":
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"vaultbridge run did not lead within {timeout:.0f} s")
            time.sleep(0.1)

    def trigger(self, body: Any) -> tuple[int, str]:
        return self.call("POST", "/v1/trigger", body)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
