"""Fault points for crash tests: make a rotation stop dead after a chosen action.

``VAULTBRIDGE_FAULT=hang-after:Apply`` blocks the process forever right after the Apply action
succeeded (a test then ``kill -9``s it); ``crash-after:Verify`` SIGKILLs the process itself at
that point; ``pause-after:Apply`` sleeps one second there (a slow mon, as a test sees it),
``pause-after:Apply:4`` four seconds.
Unset in production: the check is one dictionary lookup per action.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

VARIABLE = "VAULTBRIDGE_FAULT"


def after(action: str) -> None:
    """Called by the engine after ``action`` succeeded."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    mode, _, where = spec.partition(":")
    where, _, seconds = where.partition(":")
    if where.lower() != action.lower():
        return
    print(f"vaultbridge: fault point {spec} reached", file=sys.stderr, flush=True)
    if mode == "crash-after":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang-after":
        threading.Event().wait()
    if mode == "pause-after":
        time.sleep(float(seconds or 1.0))
