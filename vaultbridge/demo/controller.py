"""The demo's ``vaultbridge run``: the controller as a background process beside the scenes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaultbridge.demo.kube import NAMESPACE
from vaultbridge.testenv.common import free_port
from vaultbridge.testenv.env import Environment


class BackgroundController:
    """``vaultbridge run`` for the demo namespace; its log goes to a file in the workdir."""

    def __init__(self, env: Environment) -> None:
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.log_path = env.workdir / "demo-controller.log"
        self._log = self.log_path.open("w")
        variables = env.variables()
        path = variables.pop("PATH").removesuffix(":$PATH")
        environ = {
            **os.environ,
            **variables,
            "PATH": f"{path}:{os.environ.get('PATH', '')}",
            "VAULTBRIDGE_HTTP__PORT": str(self.port),
            "VAULTBRIDGE_HTTP__BIND": "127.0.0.1",
            "VAULTBRIDGE_KUBE__NAMESPACES": NAMESPACE,
            "VAULTBRIDGE_KUBE__LEASE_NAMESPACE": NAMESPACE,
            "VAULTBRIDGE_TRIGGERS__WEBHOOK_TOKEN": self.token,
            "VAULTBRIDGE_TRIGGERS__POLL_INTERVAL": "0",
            "VAULTBRIDGE_LOG_LEVEL": "INFO",
        }
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "vaultbridge"), "run"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environ,
        )
        self._read = 0

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_leading(self, timeout: float = 60.0) -> float:
        """Seconds until it leads (it has listed and watches everything by then)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vaultbridge run exited; see {self.log_path}")
            try:
                status, body = self._call("GET", "/readyz")
                if status == 200 and json.loads(body).get("role") == "leader":
                    return time.monotonic() - started
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"vaultbridge run did not lead within {timeout:.0f} s")

    def trigger(self, body: dict[str, str]) -> tuple[int, str]:
        return self._call("POST", "/v1/trigger", body)

    def new_log_lines(self, keep: Callable[[str], bool]) -> list[str]:
        """Log lines written since the last call that ``keep`` selects, without timestamps."""
        self._log.flush()
        lines = self.log_path.read_text().splitlines()
        fresh, self._read = lines[self._read :], len(lines)
        # "2026-12-01 22:15:31,296 INFO vaultbridge.controller: message" -> "message"
        return [line.split(": ", 1)[-1] for line in fresh if keep(line)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
