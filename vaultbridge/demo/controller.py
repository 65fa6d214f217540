"""The demo's ``vaultbridge run``: the controller as a background process beside the scenes."""

from __future__ import annotations

import os
from collections.abc import Callable

from vaultbridge.demo.kube import NAMESPACE
from vaultbridge.testenv.controller import ControllerProcess
from vaultbridge.testenv.env import Environment


class BackgroundController(ControllerProcess):
    """``vaultbridge run`` for the demo namespace; its log goes to a file in the workdir."""

    def __init__(self, env: Environment) -> None:
        super().__init__(env, NAMESPACE, env.workdir / "demo-controller.log", os.urandom(16).hex())
        self._read = 0

    def new_log_lines(self, keep: Callable[[str], bool]) -> list[str]:
        """Log lines written since the last call that ``keep`` selects, without timestamps."""
        lines = self.output().splitlines()
        fresh, self._read = lines[self._read :], len(lines)
        # "2026-12-01 22:15:31,296 INFO vaultbridge.controller: message" -> "message"
        return [line.split(": ", 1)[-1] for line in fresh if keep(line)]
