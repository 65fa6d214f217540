"""The demo's ``vaultbridge run``: the controller as a background process beside the scenes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from vaultbridge.demo.kube import NAMESPACE
from vaultbridge.testenv.controller import ControllerProcess
from vaultbridge.testenv.env import Environment


class BackgroundController(ControllerProcess):
    """``vaultbridge run`` for the demo namespace; its log goes to a file in the workdir."""

    def __init__(self, env: Environment) -> None:
        super().__init__(env, NAMESPACE, env.workdir / "demo-controller.log", os.urandom(16).hex())
        self._read = 0

    def wait_listed(self, credential: str, timeout: float = 30.0) -> float:
        """Seconds until the controller knows ``credential`` (its first list is done): a
        webhook naming it is queued (202), not refused as unknown (404)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            code, _body = self.trigger({"credential": credential})
            if code == 202:
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"the controller did not list {credential} within {timeout:.0f} s")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the reconciles it starts with (one per CR) are done: nothing queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _code, text = self.call("GET", "/metrics")
            busy = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(("vaultbridge_queue_depth ", "vaultbridge_rotations_in_flight "))
            )
            if busy == 0:
                return
            time.sleep(0.1)

    def new_log_lines(self, keep: Callable[[str], bool]) -> list[str]:
        """Log lines written since the last call that ``keep`` selects, without timestamps
        (waiting up to a second for the first: the log line follows the status write)."""
        deadline = time.monotonic() + 1.0
        lines = self.output().splitlines()
        while time.monotonic() < deadline and not any(keep(x) for x in lines[self._read :]):
            time.sleep(0.05)
            lines = self.output().splitlines()
        fresh, self._read = lines[self._read :], len(lines)
        # "2026-12-01 22:15:31,296 INFO vaultbridge.controller: message" -> "message"
        return [line.split(": ", 1)[-1] for line in fresh if keep(line)]
